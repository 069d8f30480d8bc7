"""The edge on real captures into a real broker: every SIP message and RTP packet arrives exactly once,
in the right partition, with the right key."""
from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest

from edge_capture.app import run
from schemas.codec import AvroCodec
from schemas.rtp_columns import unpack_stream
from spanscribe.partitioning import partition_for

pytestmark = [pytest.mark.integration, pytest.mark.capture]


def _args(pcap: str, settings: dict, **kw) -> argparse.Namespace:
    base = dict(pcap=pcap, interface=None, speed=0.0, site="lab", edge_id="edge-1", flush_ms=100,
                max_batch_packets=10000, rtp_mode="sdp", rtp_ports="1024-65535", sip_ports="5060,5061,5080",
                rtp_grace_s=30.0, bpf_filter=None, ring_mb=64, user=None, metrics_port=0, log_interval_s=10.0,
                dry_run=False, summary_json=None, partitions=None, settings=settings)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("name", ["sip-call-b2bua-g711u.pcap", "sip-over-tcp-call.pcap"])
def test_capture_into_kafka_exactly_once(name, capture, kafka_settings, consume, tmp_path):
    prefix = kafka_settings["topic_prefix"]
    bs = kafka_settings["bootstrap_servers"]
    path = str(capture(name))
    dry = tmp_path / "dry.json"
    assert run(_args(path, kafka_settings, dry_run=True, summary_json=str(dry), partitions=4)) == 0
    want = json.loads(dry.read_text())
    live = tmp_path / "live.json"
    assert run(_args(path, kafka_settings, summary_json=str(live))) == 0
    got = json.loads(live.read_text())
    assert got["delivered"] > 0 and got["delivery_failed"] == 0

    sip_codec = AvroCodec("SipMessage")
    sip = consume(bs, f"{prefix}.sip", want["sip_messages"], timeout_s=60)
    assert len(sip) == want["sip_messages"]
    seqs = []
    for m in sip:
        rec = sip_codec.decode(m.value())
        assert m.key() == f"lab/{rec['call_id']}".encode()
        assert m.partition() == partition_for(m.key(), 4)  # librdkafka murmur2_random == Java/aiokafka
        seqs.append(rec["edge_seq"])
    assert sorted(seqs) == list(range(1, want["sip_messages"] + 1))

    rtp_codec = AvroCodec("RtpBatch")
    n_batches = got["rtp_batches"]
    rtp = consume(bs, f"{prefix}.rtp", n_batches, timeout_s=60)
    assert len(rtp) == n_batches
    per_stream: Counter = Counter()
    batch_seqs: dict[int, list[int]] = {}
    for m in rtp:
        rec = rtp_codec.decode(m.value())
        assert m.key() == f"lab/edge-1/{m.partition()}".encode()
        batch_seqs.setdefault(m.partition(), []).append(rec["batch_seq"])
        for e in rec["streams"]:
            assert partition_for(e["stream_key"].encode(), 4) == m.partition()
            assert e["stream_key"] == f"lab/{e['dst_ip']}/{e['dst_port']}"
            cols = unpack_stream(e)
            for q in cols.seq.tolist():
                per_stream[(e["src_ip"], e["src_port"], e["dst_ip"], e["dst_port"], e["ssrc"], q)] += 1
    for v in batch_seqs.values():
        assert sorted(v) == list(range(len(v)))  # no gap, no duplicate
    assert sum(per_stream.values()) == want["rtp_packets"]
    # each (stream, seq) exactly once unless the capture itself repeats it
    assert max(per_stream.values(), default=1) == 1
    streams = {(s["src"], s["dst"], s["ssrc"]): s["packets"] for s in want["rtp_streams"]}
    got_streams = Counter()
    for (sip_, sp, dip, dp, ssrc, _q) in per_stream:
        got_streams[(f"{sip_}:{sp}", f"{dip}:{dp}", ssrc)] += 1
    assert dict(got_streams) == streams
