"""Central workers: the pure core (streams.core) and the thin Faust, STT and Kafka shells."""
