"""Real broker: every schema round-trips, topics are created as the architecture says, librdkafka's
murmur2_random and aiokafka put a key on the partition the edge computes, bad records are counted."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from schemas.codec import SCHEMA_NAMES, AvroCodec
from schemas.examples import example_records
from spanscribe.config import topic
from spanscribe.metrics import BAD_RECORDS
from spanscribe.partitioning import partition_for
from spanscribe.records import decode_message
from spanscribe.topics import create_topics

pytestmark = pytest.mark.integration


def test_every_schema_round_trips_through_the_broker(kafka_bootstrap: str, new_topic: Any, consume: Any) -> None:
    t = new_topic(partitions=1)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    recs = example_records()
    for name in SCHEMA_NAMES:
        p.produce(t, key=name.encode(), value=AvroCodec(name).encode(recs[name]))
    assert p.flush(30) == 0
    msgs = consume(kafka_bootstrap, t, len(SCHEMA_NAMES))
    assert [m.key().decode() for m in msgs] == list(SCHEMA_NAMES)
    for m in msgs:
        name = m.key().decode()
        assert decode_message(AvroCodec(name), m) == recs[name]


def test_topics_create_is_idempotent_and_co_partitioned(kafka_settings: dict[str, Any]) -> None:
    again = create_topics(kafka_settings)
    assert set(again.values()) == {"exists"}
    admin = AdminClient({"bootstrap.servers": kafka_settings["bootstrap_servers"]})
    md = admin.list_topics(timeout=10)
    for name in ("sip", "rtp", "bindings", "transcripts", "calls", "call-events"):
        assert len(md.topics[topic(kafka_settings, name)].partitions) == 4
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, topic(kafka_settings, "bindings"))
    conf = admin.describe_configs([res])[res].result(timeout=10)
    assert conf["cleanup.policy"].value == "compact"


def test_key_lands_on_the_same_partition_from_librdkafka_aiokafka_and_the_edge(
        kafka_bootstrap: str, new_topic: Any, consume: Any) -> None:
    n = 8
    t = new_topic(partitions=n)
    keys = [f"site{i % 3}/10.{i}.0.{i % 250}/{10000 + 2 * i}".encode() for i in range(60)]
    p = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    for k in keys:
        p.produce(t, key=k, value=b"librdkafka")
    assert p.flush(30) == 0

    async def aio() -> None:
        from aiokafka import AIOKafkaProducer

        prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await prod.start()
        try:
            for k in keys:
                await prod.send_and_wait(t, key=k, value=b"aiokafka")
        finally:
            await prod.stop()

    asyncio.run(aio())
    msgs = consume(kafka_bootstrap, t, 2 * len(keys))
    assert len(msgs) == 2 * len(keys)
    for m in msgs:
        assert m.partition() == partition_for(m.key(), n), (m.key(), m.value())


def test_bad_records_are_counted_and_dead_lettered(kafka_bootstrap: str, new_topic: Any, consume: Any) -> None:
    t, dlq = new_topic(), new_topic()
    codec = AvroCodec("SipMessage")
    good = codec.encode(example_records()["SipMessage"])
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for v in (good, good[:12] + b"\xff\xff", b"\xc3\x01" + b"\x01" * 8 + good[10:], b"\x05junk"):
        p.produce(t, value=v, key=uuid.uuid4().bytes)
    p.flush(30)
    before = {r: BAD_RECORDS.labels(topic=t, reason=r)._value.get()
              for r in ("corrupt", "unknown_fingerprint", "bad_magic")}
    decoded = [decode_message(codec, m, dlq_topic=dlq, producer=p) for m in consume(kafka_bootstrap, t, 4)]
    p.flush(30)
    assert [d is not None for d in decoded] == [True, False, False, False]
    for r in before:
        assert BAD_RECORDS.labels(topic=t, reason=r)._value.get() == before[r] + 1
    dead = consume(kafka_bootstrap, dlq, 3)
    assert len(dead) == 3
    headers = dict(dead[0].headers())
    assert headers["spanscribe.source"].decode() == f"{t}[0]@1"
