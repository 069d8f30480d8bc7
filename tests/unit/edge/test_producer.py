"""KafkaSink without a broker: backpressure on BufferError, delivery counting, config passthrough."""
from __future__ import annotations

from edge_capture.producer import PRODUCER_DEFAULTS, KafkaSink
from schemas.codec import AvroCodec
from spanscribe.config import kafka_config, load


class FakeProducer:
    def __init__(self, full_times: int) -> None:
        self.full_times = full_times
        self.produced: list[tuple] = []
        self.polls = 0

    def produce(self, topic, value=None, key=None, partition=None, on_delivery=None):
        if self.full_times:
            self.full_times -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, key, partition))
        on_delivery(None, None)

    def poll(self, timeout=0):
        self.polls += 1
        return 0

    def __len__(self):
        return 0

    def flush(self, timeout=0):
        return 0


def _sink(fake: FakeProducer) -> KafkaSink:
    s = object.__new__(KafkaSink)
    s.producer = fake
    s.sip_topic, s.rtp_topic = "p.sip", "p.rtp"
    s.sip_codec, s.rtp_codec = AvroCodec("SipMessage"), AvroCodec("RtpBatch")
    s.delivered = s.failed = s.backpressure = s.sent = s.bytes = 0
    s._last_error_log = 0.0
    s.rtp_partitions = 4
    s.rtp_writer = None
    return s


def test_queue_full_waits_and_retries_never_drops():
    fake = FakeProducer(full_times=3)
    sink = _sink(fake)
    rec = {"site": "s", "edge_id": "e", "edge_start_us": 1, "batch_seq": 0, "flush_ts_us": 2, "streams": []}
    sink.send_rtp(2, b"s/e/2", rec)
    assert fake.produced == [("p.rtp", b"s/e/2", 2)]
    assert sink.backpressure == 3 and fake.polls >= 3 and sink.delivered == 1


def test_delivery_failure_is_counted():
    sink = _sink(FakeProducer(0))

    class Msg:
        def topic(self):
            return "p.sip"

        def partition(self):
            return 0

    sink._on_delivery("broker down", Msg())
    assert sink.failed == 1


def test_env_passthrough_reaches_librdkafka_config():
    env = {"SPANSCRIBE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SPANSCRIBE_KAFKA_SASL_MECHANISM": "PLAIN",
           "SPANSCRIBE_KAFKA_COMPRESSION_TYPE": "zstd"}
    conf = dict(PRODUCER_DEFAULTS)
    conf.update(kafka_config(load(environ=env)))
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "PLAIN"
    assert conf["compression.type"] == "zstd"  # user settings override our defaults
    assert conf["enable.idempotence"] is True and conf["acks"] == "all" and conf["partitioner"] == "murmur2_random"


def test_fast_rtpbatch_writer_equals_fastavro(capture):
    import random

    from edge_capture.avro_fast import RtpBatchWriter, _long, _longs
    from edge_capture.pcapfile import open_capture, read_capture
    from edge_capture.pipeline import EdgeConfig, EdgePipeline
    from edge_capture.sinks import DryRunSink
    from schemas.codec import SINGLE_OBJECT_MAGIC

    vals = [0, 1, -1, 63, 64, -64, -65, 2**31, -2**63, 2**63 - 1] + [random.randrange(-2**63, 2**63) for _ in range(500)]
    assert _longs(vals) == [_long(v) for v in vals]
    codec = AvroCodec("RtpBatch")
    w = RtpBatchWriter(SINGLE_OBJECT_MAGIC + codec.fingerprint)
    sink = DryRunSink(4, keep=True)
    p = EdgePipeline(EdgeConfig(site="lab", edge_id="e"), sink)
    with open_capture(str(capture("sip-call-b2bua-g711u.pcap"))) as f:
        p.consume(read_capture(f))
    p.finish()
    assert len(sink.rtp) > 100
    for _part, _key, rec in sink.rtp:
        assert w.encode(rec) == codec.encode(rec)
    empty = {"site": "s", "edge_id": "e", "edge_start_us": 1, "batch_seq": 0, "flush_ts_us": 2, "streams": []}
    assert w.encode(empty) == codec.encode(empty)
