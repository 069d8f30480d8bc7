"""JitterBuffer: order, loss, reorder, duplicates, SSRC change, timestamp jump, 16-bit wrap."""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.jitter import Frames, JitterBuffer

T0 = 1_000_000_000
PKT_US = 20_000


def add(jb: JitterBuffer, seqs: Sequence[int], ts: Sequence[int] | None = None, cap: Sequence[int] | None = None,
        ssrc: int = 7, pts: Sequence[int] | None = None) -> Frames:
    n = len(seqs)
    ts = ts if ts is not None else [(s % 65536) * 160 for s in seqs]
    cap = cap if cap is not None else [T0 + i * PKT_US for i in range(n)]
    payloads = [bytes([s & 0xFF]) * 4 for s in seqs]
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(p) for p in payloads], out=off[1:])
    return jb.add_arrays(ssrc, np.array([s & 0xFFFF for s in seqs], dtype=np.uint16),
                         np.array([t & 0xFFFFFFFF for t in ts], dtype=np.uint32), np.array(cap, dtype=np.int64),
                         np.array(pts or [0] * n, dtype=np.uint8), off, b"".join(payloads))


def first_bytes(f: Frames) -> list[int]:
    return [f.payloads[int(f.offsets[i])] for i in range(f.count)]


def test_in_order_released_at_once_after_first_window() -> None:
    jb = JitterBuffer(8000, window_ms=60, origin_us=T0)
    f = add(jb, [10, 11, 12], cap=[T0, T0 + 20_000, T0 + 40_000])
    assert f.count == 0  # the very first packet waits one window for reordered predecessors
    f = add(jb, [13, 14], cap=[T0 + 60_000, T0 + 80_000])
    assert first_bytes(f) == [10, 11, 12, 13, 14]
    assert f.pos_ticks.tolist() == [0, 160, 320, 480, 640]  # anchored at call start, then RTP ts
    f = add(jb, [15], cap=[T0 + 100_000])
    assert first_bytes(f) == [15]  # contiguous: no wait
    assert jb.stats.packets == 6 and jb.stats.lost == 0


def test_loss_becomes_gap_in_positions() -> None:
    jb = JitterBuffer(8000, window_ms=40, origin_us=T0)
    f = add(jb, [1, 2, 4, 5], cap=[T0 + i * 20_000 for i in range(4)])
    f2 = jb.flush()
    seqs = first_bytes(f) + first_bytes(f2)
    assert seqs == [1, 2, 4, 5]
    pos = np.concatenate([f.pos_ticks, f2.pos_ticks]).tolist()
    assert pos[2] - pos[1] == 320  # one packet (160 ticks) missing -> gap kept
    assert jb.stats.lost == 1


def test_reorder_waits_for_the_window() -> None:
    jb = JitterBuffer(8000, window_ms=100, origin_us=T0)
    add(jb, [100], cap=[T0])
    f = add(jb, [101, 103], cap=[T0 + 100_000, T0 + 120_000])
    assert first_bytes(f) == [100, 101]
    f = add(jb, [102], cap=[T0 + 140_000])  # arrives within the window
    assert first_bytes(f) == [102, 103]
    assert jb.stats.late == 0 and jb.stats.lost == 0


def test_late_and_duplicates() -> None:
    jb = JitterBuffer(8000, window_ms=40, origin_us=T0)
    add(jb, [1, 1, 2], cap=[T0, T0 + 1, T0 + 20_000])
    f = add(jb, [4, 2], cap=[T0 + 60_000, T0 + 61_000])  # 2 again: held -> duplicate
    assert first_bytes(f) == [1, 2]
    f = add(jb, [5], cap=[T0 + 200_000])  # gap at 3 given up
    assert first_bytes(f) == [4, 5]
    f = add(jb, [3, 4], cap=[T0 + 210_000, T0 + 211_000])  # 3 is late, 4 a duplicate of a played one
    assert f.count == 0
    st_ = jb.stats
    assert (st_.duplicates, st_.late, st_.packets) == (2 + 1, 1, 4)


def test_sequence_wrap() -> None:
    jb = JitterBuffer(8000, window_ms=40, origin_us=T0)
    seqs = [65533, 65534, 65535, 0, 1, 2]
    ts = [(0xFFFFFF00 + i * 160) for i in range(6)]  # RTP ts wraps too
    f = add(jb, [65533, 65535, 65534, 1, 0, 2], ts=[ts[0], ts[2], ts[1], ts[4], ts[3], ts[5]])
    f2 = jb.flush()
    assert first_bytes(f) + first_bytes(f2) == [s & 0xFF for s in seqs]
    pos = np.concatenate([f.pos_ticks, f2.pos_ticks])
    assert np.all(np.diff(pos) == 160)
    assert jb.stats.lost == 0


def test_ssrc_change_keeps_timeline_continuous() -> None:
    jb = JitterBuffer(8000, window_ms=20, origin_us=T0)
    parts = [add(jb, [1, 2, 3], cap=[T0, T0 + 20_000, T0 + 40_000], ssrc=1)]
    # a new SSRC with unrelated seq/ts, right after
    parts.append(add(jb, [9000, 9001], ts=[5_000_000, 5_000_160], cap=[T0 + 60_000, T0 + 80_000], ssrc=2))
    parts.append(jb.flush())
    pos = np.concatenate([f.pos_ticks for f in parts]).tolist()
    assert pos == [0, 160, 320, 480, 640]  # at its capture position, after the old stream's end
    resets = np.concatenate([f.reset for f in parts]).tolist()
    assert resets == [False, False, False, True, False]
    assert jb.stats.ssrc == 2 and jb.stats.packets == 5 and jb.stats.lost == 0


def test_timestamp_jump_reanchors() -> None:
    jb = JitterBuffer(8000, window_ms=20, max_gap_ms=500, origin_us=T0)
    ts = [0, 160, 320, 10_000_000, 10_000_160]
    parts = [add(jb, [1, 2, 3, 4, 5], ts=ts, cap=[T0 + i * 20_000 for i in range(5)]), jb.flush()]
    p = np.concatenate([f.pos_ticks for f in parts]).tolist()
    r = np.concatenate([f.reset for f in parts]).tolist()
    # the jump re-anchors at capture time (not 20 minutes later) and is flagged
    assert p == [0, 160, 320, 480, 640] and r == [False, False, False, True, False]


def test_backwards_timestamp_reanchors() -> None:
    jb = JitterBuffer(8000, window_ms=20, origin_us=T0)
    parts = [add(jb, [1, 2, 3, 4], ts=[8000, 8160, 8320, 0], cap=[T0 + i * 20_000 for i in range(4)]), jb.flush()]
    p = np.concatenate([f.pos_ticks for f in parts]).tolist()
    assert p == [0, 160, 320, 480]


def test_telephone_events_do_not_move_the_timeline() -> None:
    jb = JitterBuffer(8000, window_ms=20, origin_us=T0, non_audio_pts=[101])
    # audio 1..3, then 3 event packets sharing the event-start ts, then audio again
    ts = [0, 160, 320, 480, 480, 480, 960]
    f = add(jb, [1, 2, 3, 4, 5, 6, 7], ts=ts, pts=[0, 0, 0, 101, 101, 101, 0])
    f2 = jb.flush()
    pos = np.concatenate([f.pos_ticks, f2.pos_ticks]).tolist()
    assert pos == [0, 160, 320, -1, -1, -1, 960]
    assert not np.concatenate([f.reset, f2.reset]).any()


def test_snapshot_restore_midstream() -> None:
    def run(split: bool) -> list[int]:
        jb = JitterBuffer(8000, window_ms=40, origin_us=T0)
        out = first_bytes(add(jb, [1, 3, 2, 6], cap=[T0 + i * 20_000 for i in range(4)]))
        if split:
            jb = JitterBuffer.restore(json.loads(json.dumps(jb.snapshot())))
        out += first_bytes(add(jb, [4, 5, 7], cap=[T0 + 80_000 + i * 20_000 for i in range(3)]))
        out += first_bytes(jb.flush())
        return out

    assert run(True) == run(False) == [1, 2, 3, 4, 5, 6, 7]


@st.composite
def permuted_within_window(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    n = draw(st.integers(min_value=1, max_value=60))
    start = draw(st.integers(min_value=0, max_value=65535))
    seqs = [(start + i) & 0xFFFF for i in range(n)]
    # displace each packet by at most `k` positions: a permutation within a 20 ms * k window
    k = draw(st.integers(min_value=0, max_value=4))
    keys = [i + draw(st.floats(min_value=0, max_value=k)) for i in range(n)]
    order = sorted(range(n), key=lambda i: keys[i])
    dup_idx = draw(st.lists(st.integers(min_value=0, max_value=n - 1), max_size=5))
    arrived = [seqs[i] for i in order]
    for d in dup_idx:  # duplicates re-sent right after
        arrived.insert(min(len(arrived), arrived.index(seqs[d]) + 1), seqs[d])
    return seqs, arrived, start


@settings(max_examples=200, deadline=None)
@given(permuted_within_window(), st.integers(min_value=1, max_value=7))
def test_any_permutation_within_window_same_output(case: tuple[list[int], list[int], int], batch: int) -> None:
    seqs, arrived, start = case
    jb = JitterBuffer(8000, window_ms=200, origin_us=T0)
    out: list[int] = []
    pos: list[int] = []
    ts_of = {s: ((s - start) & 0xFFFF) * 160 for s in seqs}
    for i in range(0, len(arrived), batch):
        chunk = arrived[i:i + batch]
        f = add(jb, chunk, ts=[ts_of[s] for s in chunk], cap=[T0 + (i + j) * PKT_US for j in range(len(chunk))])
        out += first_bytes(f)
        pos += f.pos_ticks.tolist()
    f = jb.flush()
    out += first_bytes(f)
    pos += f.pos_ticks.tolist()
    assert out == [s & 0xFF for s in seqs]  # every packet once, in sequence order
    assert pos == [i * 160 for i in range(len(seqs))]
    assert jb.stats.lost == 0 and jb.stats.late == 0
