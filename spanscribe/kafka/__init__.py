"""A real single-node KRaft Apache Kafka broker for development, tests and the demo (no Docker)."""
from spanscribe.kafka.local import KAFKA_VERSION, LocalKafka, fetch_jars

__all__ = ["KAFKA_VERSION", "LocalKafka", "fetch_jars"]
