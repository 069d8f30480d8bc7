"""The edge's murmur2 partitioner equals Kafka's Java client and aiokafka (Faust's producer)."""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from spanscribe.partitioning import murmur2, partition_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_java_vectors() -> None:
    for key, expected in JAVA_VECTORS.items():
        assert murmur2(key) == expected, key


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=256))
def test_same_partition_as_aiokafka(key: bytes, n: int) -> None:
    parts = list(range(n))
    assert partition_for(key, n) == DefaultPartitioner()(key, parts, parts)
