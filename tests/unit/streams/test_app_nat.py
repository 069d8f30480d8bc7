"""The worker shell's NAT fallback bundling (streams.app.by_source_batches): Unmatched RTP re-keyed by
its source tuple, one RtpBatch per target partition, a key on that partition, Avro-valid."""
from __future__ import annotations

from streams_helpers import avro_roundtrip, batch, synth_entry

from spanscribe.partitioning import partition_for
from streams.app import BY_SOURCE_EDGE_ID, by_source_batches
from streams.core.media import MediaJoiner, Unmatched

T0 = 1_700_000_000_000_000


def _unmatched(n_sources: int) -> list[Unmatched]:
    j = MediaJoiner(pending_s=1.0, nat_fallback=True)
    entries = [synth_entry("203.0.113.5", 40000 + i, [1, 2], [0, 160], [T0 + 10_000, T0 + 30_000], [b"\x7f" * 160] * 2,
                           src=("10.9.0.10", 41000 + i)) for i in range(n_sources)]
    j.on_rtp_batch(batch(entries, T0 + 100_000))
    out = j.expire(T0 + 2_000_000)
    assert all(isinstance(o, Unmatched) for o in out) and len(out) == n_sources
    return [o for o in out if isinstance(o, Unmatched)]


def test_one_record_per_target_partition_keyed_on_it() -> None:
    un = _unmatched(12)
    origin = batch([], T0 + 2_000_000, seq=7)
    recs = by_source_batches(un, 4, origin)
    parts = [p for p, _, _ in recs]
    assert parts == sorted(set(parts))  # one record per partition
    assert sorted(partition_for(u.source_key.encode(), 4) for u in un) == sorted(
        p for p, _, r in recs for _ in r["streams"])
    seen = []
    for part, key, rec in recs:
        assert partition_for(key, 4) == part  # the key hashes to the partition it is sent to
        assert all(partition_for(e["stream_key"].encode(), 4) == part for e in rec["streams"])
        assert (rec["site"], rec["edge_id"], rec["batch_seq"], rec["flush_ts_us"]) == ("s1", "edge1", 7, T0 + 2_000_000)
        assert avro_roundtrip("RtpBatch", rec) == rec
        seen += [e["stream_key"] for e in rec["streams"]]
    assert sorted(seen) == sorted(u.source_key for u in un)


def test_timer_expiry_without_a_record_and_the_round_trip() -> None:
    un = _unmatched(1)
    [(part, key, rec)] = by_source_batches(un, 4, None, flush_us=T0 + 3_000_000)
    assert key == b"s1/10.9.0.10/41000" and part == partition_for(key, 4)
    assert (rec["site"], rec["edge_id"], rec["flush_ts_us"]) == ("s1", BY_SOURCE_EDGE_ID, T0 + 3_000_000)
    # joined there by source; without a binding: counted unmatched, nothing handed back (no loop)
    j = MediaJoiner(pending_s=1.0, nat_fallback=True)
    out = j.on_rtp_batch(avro_roundtrip("RtpBatch", rec), by_source=True) + j.expire(T0 + 60_000_000)
    assert out == [] and j.counters["unmatched_packets"] == 2 and j.counters["by_source_packets"] == 2
    assert by_source_batches([], 4, None) == []
