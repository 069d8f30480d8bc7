"""NAT fallback with real parts (Kafka broker, STT server with the echo engine, ``spanscribe worker``
subprocess; fixtures in conftest.py): RTP whose destination no SDP names is re-keyed by its source tuple
to ``<prefix>.rtp-by-source`` and joined there (symmetric RTP), with the speaker of the other side."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgen import Call, Turn, next_start_us, rtp_batches  # noqa: E402
from conftest import PARTITIONS, Pipeline  # noqa: E402

from spanscribe.partitioning import partition_for  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# RTP unclaimed by destination for 2 s of capture time falls back to its source tuple (default 120 s:
# sized for backlogs; see docs/design/decisions.md "NAT fallback")
WORKER_ENV = {"SPANSCRIBE_WORKER__PENDING_S": "2"}

CALLER = ("10.9.0.10", 40000)
NAT_PUBLIC = ("203.0.113.5", 40000)  # the callee agent's NAT: no SDP names it
PRIVATE_IP = "192.168.1.10"  # what the callee agent announces in its SDP


def _private_port() -> int:
    """A private port from 30000 whose stream key is on the partition of the caller's tuple. The binding
    of the private tuple never carries RTP; a partition whose media clock never starts (no RTP of its
    own on this worker) would end its (empty) stream only when RTP arrives there."""
    want = partition_for(f"it/{CALLER[0]}/{CALLER[1]}".encode(), PARTITIONS)
    return next(p for p in range(30000, 31000) if partition_for(f"it/{PRIVATE_IP}/{p}".encode(), PARTITIONS) == want)


def _metric(p: Pipeline, name: str) -> float:
    for line in p.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _wait_metric(p: Pipeline, name: str, pred: Any, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    v = _metric(p, name)
    while not pred(v) and time.monotonic() < deadline:
        time.sleep(0.5)
        v = _metric(p, name)
    return v


def test_callee_behind_nat_caller_words_recovered_by_source(pipeline: Pipeline) -> None:
    turns = [Turn("callee", 0.5, 1.0), Turn("caller", 2.5, 1.0), Turn("callee", 4.5, 1.0), Turn("caller", 6.5, 1.0)]
    call = Call(f"nat-{uuid.uuid4().hex[:10]}@it", caller_ip=CALLER[0], caller_port=CALLER[1],
                callee_ip=PRIVATE_IP, callee_port=_private_port(), callee_public=NAT_PUBLIC, turns=turns, media_s=10.0)
    # the caller's voice goes to the NAT's public address; the callee's comes from it to the caller's tuple
    assert call.stream_key("caller") == f"it/{NAT_PUBLIC[0]}/{NAT_PUBLIC[1]}"
    pkts = call.packets()
    assert {(p[2], p[3]) for p in pkts if p[1] == call.stream_key("callee")} == {NAT_PUBLIC}
    n_caller = sum(1 for p in pkts if p[1] == call.stream_key("caller"))
    fallback0 = _metric(pipeline, "spanscribe_rtp_nat_fallback_packets_total")
    unmatched0 = _metric(pipeline, "spanscribe_rtp_unmatched_total")
    # The signalling first, and its two bindings applied, then the media: this module's pending window
    # is 2 s of capture time and the call's 10 s of RTP arrive at once, so RTP read before its INVITE
    # (records of different partitions race in the fetch) would be 2 s "old" at once and go by source.
    # At real-time pace, or with the default 120 s window, that race costs nothing.
    bindings0 = _metric(pipeline, "spanscribe_bindings_active")
    pipeline.send_call(call, to_s=0.0)
    _wait_metric(pipeline, "spanscribe_bindings_active", lambda v: v >= bindings0 + 2)
    pipeline.send_call(call, from_s=0.0)

    # The first document comes when the callee-side streams have ended; the by-source stream lags by the
    # pending window and its end re-emits the document (compacted topic: the latest wins). Wait for it.
    def complete(rs: list[Any]) -> bool:
        docs = [r for _, r in rs if r and r["call_id"] == call.call_id]
        return bool(docs) and any(s["speaker"] == "caller" and s["packets"] for s in docs[-1]["streams"])
    recs = pipeline.read("calls", "CallTranscript", until=complete, timeout_s=90)
    docs = [r for _, r in recs if r and r["call_id"] == call.call_id]
    assert docs, "no CallTranscript\n" + pipeline.worker.log()[-4000:]
    doc = docs[-1]
    segs = [(s["speaker"], s["start_s"], s["text"]) for s in doc["segments"]]
    assert doc["end_reason"] == "bye"
    for speaker in ("caller", "callee"):
        want = call.turn_call_times(speaker)
        got = [s["start_s"] for s in doc["segments"] if s["speaker"] == speaker]
        assert len(got) == len(want), (speaker, segs, want)
        for g, w in zip(got, want, strict=True):
            assert abs(g - w) <= 0.15, (speaker, got, want)
    assert all(text == "speech" for _, _, text in segs), segs
    # the caller's audio: ONE stream keyed by the caller's own tuple (joined by source), every packet,
    # its tail (re-sent after the BYE) included
    streams = sorted((s["speaker"], s["stream_key"], s["packets"], s["lost"]) for s in doc["streams"])
    key = f"it/{CALLER[0]}/{CALLER[1]}"
    assert streams == [("callee", key, n_caller, 0), ("caller", key, n_caller, 0)], streams
    fallback = _wait_metric(pipeline, "spanscribe_rtp_nat_fallback_packets_total", lambda v: v >= fallback0 + n_caller)
    assert fallback - fallback0 == n_caller
    assert _metric(pipeline, "spanscribe_rtp_by_source_packets_total") >= n_caller
    assert _metric(pipeline, "spanscribe_rtp_by_source_records_total") > 0
    assert _metric(pipeline, "spanscribe_rtp_unmatched_total") == unmatched0
    # by-source records are acknowledged like rtp ones (once their audio has its final result or the
    # speaker's session closed): the group's committed offsets reach the end of the topic
    deadline = time.monotonic() + 30
    while (lag := _by_source_lag(pipeline)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not lag, lag


def _by_source_lag(p: Pipeline) -> dict[int, int]:
    """rtp-by-source partitions whose committed offset is behind the end: partition -> records behind."""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    group = p.worker.argv[p.worker.argv.index("--app-id") + 1]
    tps = [TopicPartition(p.topic("rtp-by-source"), i) for i in range(PARTITIONS)]
    admin = AdminClient({"bootstrap.servers": p.settings["bootstrap_servers"]})  # kept alive for the result
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
    committed = {tp.partition: tp.offset for tp in res[group].result(timeout=15).topic_partitions}
    c = Consumer({"bootstrap.servers": p.settings["bootstrap_servers"], "group.id": f"hw-{group}"})
    try:
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    finally:
        c.close()
    return {i: end - max(committed.get(i, 0), 0) for i, end in ends.items() if end > max(committed.get(i, 0), 0)}


def test_rtp_matching_neither_tuple_is_counted_once_never_looped(pipeline: Pipeline) -> None:
    """RTP no binding claims by destination nor by source goes by source once, then counts as unmatched."""
    t0 = next_start_us()
    pkts = [(t0 + 20_000 * i, "it/198.51.100.7/5000", "198.51.100.8", 6000, "198.51.100.7", 5000, 0x5151,
             i, 160 * i, b"\xff" * 160) for i in range(40)]
    import callgen

    callgen._ended(pkts[-1][0] + 20_000)
    fb0 = _metric(pipeline, "spanscribe_rtp_nat_fallback_packets_total")
    bs0 = _metric(pipeline, "spanscribe_rtp_by_source_packets_total")
    un0 = _metric(pipeline, "spanscribe_rtp_unmatched_total")
    pipeline.send_rtp(rtp_batches(pkts, PARTITIONS, site="it"))
    un = _wait_metric(pipeline, "spanscribe_rtp_unmatched_total", lambda v: v >= un0 + 40)
    assert un - un0 == 40
    time.sleep(4.0)  # a loop would re-send it after another pending window
    assert _metric(pipeline, "spanscribe_rtp_nat_fallback_packets_total") - fb0 == 40
    assert _metric(pipeline, "spanscribe_rtp_by_source_packets_total") - bs0 == 40
    assert _metric(pipeline, "spanscribe_rtp_unmatched_total") - un0 == 40
