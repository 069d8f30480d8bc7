"""Bad input never raises out of the core: it is counted and skipped."""
from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams_helpers import batch, sdp, sip_raw, sip_record, synth_entry

from streams.core.dialog import DialogTracker
from streams.core.media import AudioChunk, MediaJoiner

T0 = 1_700_000_000_000_000
PMAP = [{"payload_type": 0, "encoding": "PCMU", "clock_rate": 8000, "channels": 1, "fmtp": None},
        {"payload_type": 9, "encoding": "G722", "clock_rate": 8000, "channels": 1, "fmtp": None},
        {"payload_type": 101, "encoding": "telephone-event", "clock_rate": 8000, "channels": 1, "fmtp": None}]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_dialog_arbitrary_bytes(raw: bytes) -> None:
    t = DialogTracker()
    good = sip_record(sip_raw("INVITE sip:b SIP/2.0", "fz", "1 INVITE", "f", None, sdp("10.0.0.1", 4000)), T0)
    t.on_sip(good)
    rec = dict(good)
    rec["raw"] = raw
    assert isinstance(t.on_sip(rec), list)
    rec["raw"] = good["raw"][:len(raw) % max(1, len(good["raw"]))] + raw  # truncated + junk
    assert isinstance(t.on_sip(rec), list)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 2**32 - 1), st.integers(0, 3_000_000),
                          st.sampled_from([0, 9, 101, 13, 96]), st.binary(max_size=200)), min_size=1, max_size=30))
def test_joiner_arbitrary_packets(pkts: list[tuple[int, int, int, int, bytes]]) -> None:
    j = MediaJoiner(window_ms=40)
    j.on_binding({"stream_key": "s1/10.0.0.1/4000", "site": "s1", "call_id": "c", "speaker": "callee", "role": None,
                  "call_start_us": T0, "valid_from_us": T0, "valid_until_us": None, "version": 1, "encrypted": False,
                  "payload_map": PMAP})
    pkts = sorted(pkts, key=lambda p: p[2])  # capture order
    ent = synth_entry("10.0.0.1", 4000, [p[0] for p in pkts], [p[1] for p in pkts], [T0 + p[2] for p in pkts],
                      [p[4] for p in pkts], pts=[p[3] for p in pkts])
    out: list[Any] = j.on_rtp_batch(batch([ent], T0 + 3_100_000))
    out += j.expire(T0 + 10_000_000) + j.flush_all()
    for o in out:
        if isinstance(o, AudioChunk):
            assert o.pcm.dtype == np.int16 and o.start_s >= 0.0
    starts = [o.start_s for o in out if isinstance(o, AudioChunk)]
    assert starts == sorted(starts)  # monotonic call time within the stream


def test_joiner_corrupt_entry_counted() -> None:
    j = MediaJoiner()
    ent = synth_entry("10.0.0.1", 4000, [1, 2], [0, 160], [T0, T0 + 20_000], [b"\x00" * 160] * 2)
    ent["seq"] = ent["seq"][:3]  # column shorter than count
    assert j.on_rtp_batch(batch([ent], T0 + 100_000)) == []
    assert j.counters["bad_input"] == 1
