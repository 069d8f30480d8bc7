"""Differential test: MediaJoiner's vectorised record path == the per-stream path, output for output.

Two joiners get the same bindings, RtpBatch records and expire calls; one has the vectorised path
switched off (``_fast_path = False``). Every call must return the same outputs (AudioChunks sample for
sample with the same start_s, StreamEnded with the same stats, Notes, Unmatched) and the joiners must
end in the same state (``snapshot()``: jitter buffers, resampler history, counters). The inputs mix
clean streams (the vectorised case) with everything that must take the per-stream path: reordering,
loss, duplicates, DTMF and CN, SSRC changes, sequence and timestamp jumps, DTX gaps, SRTP-looking
payloads, unknown payload types, encrypted bindings, G.722 and L16, packet sizes that differ within an
entry, two entries of one stream in a record, corrupt entries, RTP before its binding, codec changes,
binding closes and snapshot/restore of streams.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from streams_helpers import batch, synth_entry

from streams.core.media import AudioChunk, MediaJoiner, Note, StreamEnded, Unmatched

T0 = 1_700_000_000_000_000
PT_NAMES = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 96: ("L16", 8000)}
EVENTS = [{"payload_type": 101, "encoding": "telephone-event", "clock_rate": 8000, "channels": 1, "fmtp": "0-16"},
          {"payload_type": 13, "encoding": "CN", "clock_rate": 8000, "channels": 1, "fmtp": None}]


def pmap(*pts: int) -> list[dict[str, Any]]:
    return [{"payload_type": p, "encoding": PT_NAMES[p][0], "clock_rate": PT_NAMES[p][1], "channels": 1,
             "fmtp": None} for p in pts] + EVENTS


def binding(i: int, call: str, pts: tuple[int, ...], frm: int, until: int | None = None, version: int = 1,
            encrypted: bool = False) -> dict[str, Any]:
    return {"stream_key": key(i), "site": "s1", "call_id": call, "speaker": "callee" if i % 2 else "caller",
            "role": "agent" if i % 3 == 0 else None, "call_start_us": T0, "valid_from_us": frm,
            "valid_until_us": until, "version": version, "encrypted": encrypted, "payload_map": pmap(*pts)}


def key(i: int) -> str:
    return f"s1/10.1.0.{i}/{4000 + 2 * i}"


def rep(o: Any) -> tuple[Any, ...]:
    """A comparable form of one output (AudioChunk has eq=False and holds an array)."""
    if isinstance(o, AudioChunk):
        return ("audio", o.call_key, o.site, o.call_id, o.speaker, o.role, o.stream_key, o.start_s,
                o.sample_rate, str(o.pcm.dtype), o.pcm.shape, o.pcm.tobytes())
    if isinstance(o, StreamEnded):
        return ("ended", o.call_key, o.site, o.call_id, o.speaker, o.stream_key, o.ts_us, o.reason,
                sorted(o.stats.items()))
    if isinstance(o, Note):
        return ("note", o.call_key, o.site, o.call_id, o.ts_us, o.text)
    assert isinstance(o, Unmatched)
    return ("unmatched", o.source_key, sorted(o.entry.items()))


class Pair:
    """A vectorised joiner and a per-stream one, driven identically and compared after every call."""

    def __init__(self, **kw: Any) -> None:
        self.fast = MediaJoiner(**kw)
        self.slow = MediaJoiner(**kw)
        self.slow._fast_path = False  # type: ignore[attr-defined]
        self.calls = 0

    def do(self, name: str, *args: Any) -> None:
        a = getattr(self.fast, name)(*args)
        b = getattr(self.slow, name)(*args)
        assert [rep(o) for o in a] == [rep(o) for o in b], f"call {self.calls} {name}"
        self.calls += 1

    def same_state(self) -> None:
        assert self.fast.snapshot() == self.slow.snapshot()
        assert self.fast.counters == self.slow.counters
        assert self.fast.pending_packets == self.slow.pending_packets
        assert self.fast.pop_touched() == self.slow.pop_touched()


class Sender:
    """One RTP sender (a stream key) with its own sequence, timestamp, SSRC and payload type."""

    def __init__(self, i: int, pt: int, rng: np.random.Generator) -> None:
        self.i = i
        self.pt = pt
        self.seq = int(rng.integers(0, 65536))
        self.ts = int(rng.integers(0, 1 << 32))
        self.ssrc = int(rng.integers(1, 1 << 32))
        self.ptime = 20 if rng.random() < 0.85 else int(rng.choice([10, 30]))

    def packets(self, k: int, rng: np.random.Generator, messy: float) -> list[tuple[int, int, int, int, bytes]]:
        """(seq, ts, capture_us, pt, payload) of interval k (100 ms), in capture order."""
        n = 100 // self.ptime
        step = 8 * self.ptime  # ticks per packet at 8 kHz (G.722 too: RTP clock 8000)
        nbytes = step * 2 if self.pt == 96 else step  # L16: 2 bytes per sample
        jitter = rng.integers(0, 3000, size=n) if rng.random() < 0.7 else np.zeros(n, dtype=np.int64)
        base = T0 + 1_000_000 + k * 100_000 + 7 * self.i
        pk = []
        for j in range(n):
            cap = base + j * self.ptime * 1000 + int(jitter[j])
            pay = rng.integers(0, 256, size=nbytes, dtype=np.uint8).tobytes()
            pk.append([(self.seq + j) & 0xFFFF, (self.ts + j * step) & 0xFFFFFFFF, cap, self.pt, pay])
        self.seq += n
        self.ts += n * step
        for j in range(1, n):  # capture times in order (the edge packs capture order)
            pk[j][2] = max(pk[j][2], pk[j - 1][2])
        if rng.random() < messy:
            what = rng.choice(["loss", "reorder", "dup", "dtmf", "cn", "ssrc", "seqjump", "tsjump", "dtx",
                               "srtp", "badpt", "varlen", "late", "empty_pay", "ts_repeat"])
            self.mess(str(what), pk, rng, step)
        return [tuple(p) for p in pk]  # type: ignore[misc]

    def mess(self, what: str, pk: list[list[Any]], rng: np.random.Generator, step: int) -> None:
        n = len(pk)
        j = int(rng.integers(0, n))
        if what == "loss" and n > 1:
            del pk[j]
        elif what == "reorder" and n > 1:
            a, b = (j, (j + 1) % n)
            for c in (0, 1, 3, 4):
                pk[a][c], pk[b][c] = pk[b][c], pk[a][c]
        elif what == "dup":
            pk.insert(j + 1, list(pk[j]))
            for q in range(j + 1, len(pk)):
                pk[q][2] = max(pk[q][2], pk[q - 1][2])
        elif what == "dtmf":
            for q in range(j, n):
                pk[q][3], pk[q][4], pk[q][1] = 101, bytes([5, 10, 0, 160]), pk[j][1]
        elif what == "cn":
            pk[j][3], pk[j][4] = 13, b"\x40"
        elif what == "ssrc":
            self.ssrc = int(rng.integers(1, 1 << 32))
        elif what == "seqjump":
            self.seq += 5000
        elif what == "tsjump":
            self.ts += int(rng.choice([80_000, -40_000, 1 << 31]))
        elif what == "dtx":
            pk.clear()
            self.ts += int(rng.integers(1, 30)) * step
        elif what == "srtp":
            for p in pk:
                p[4] = p[4] + b"\x00" * int(rng.choice([4, 10]))
        elif what == "badpt":
            pk[j][3] = 18
        elif what == "varlen":
            pk[j][4] = pk[j][4][: max(1, len(pk[j][4]) // 2)]
        elif what == "late" and n > 1:
            pk.append(list(pk.pop(0)))
            pk[-1][2] = pk[-2][2]
        elif what == "empty_pay":
            pk[j][4] = b""
        elif what == "ts_repeat" and n > 1:
            pk[-1][1] = pk[-2][1]


def entry_of(s: Sender, pk: list[tuple[int, int, int, int, bytes]]) -> dict[str, Any]:
    return synth_entry(f"10.1.0.{s.i}", 4000 + 2 * s.i, [p[0] for p in pk], [p[1] for p in pk], [p[2] for p in pk],
                       [p[4] for p in pk], pts=[p[3] for p in pk], ssrc=s.ssrc)


def scenario(seed: int, stt_rate: int, messy: float, streams: int = 14, intervals: int = 24, churn: float = 1.0,
             codecs: tuple[int, ...] = (0,) * 8 + (8,) * 3 + (9, 96), fast_min: int | None = None,
             state_every: int = 0) -> Pair:
    rng = np.random.default_rng(seed)
    pair = Pair(stt_rate=stt_rate, window_ms=int(rng.choice([60, 200])), max_pending_s=2.0, idle_s=1.0)
    pair.fast._fast_min = fast_min if fast_min is not None else int(rng.choice([1, 2, 4]))
    senders = [Sender(i, int(rng.choice(codecs)), rng) for i in range(streams)]
    bound_at = {i: (0 if rng.random() < 0.8 else int(rng.integers(1, 8))) for i in range(streams)}
    versions = dict.fromkeys(range(streams), 1)
    calls = {i: f"call-{seed}-{i // 2}" for i in range(streams)}
    encrypted = {i: bool(rng.random() < 0.05) for i in range(streams)}
    for i in range(streams):
        if bound_at[i] == 0:
            pair.do("on_binding", binding(i, calls[i], (senders[i].pt,), T0, encrypted=encrypted[i]))
    for k in range(intervals):
        flush = T0 + 1_000_000 + (k + 1) * 100_000
        entries = []
        for s in senders:
            if rng.random() < 0.03:  # this interval lost entirely for this stream (then a ts/seq gap)
                s.packets(k, rng, 0.0)
                continue
            pk = s.packets(k, rng, messy)
            if not pk:
                continue
            if rng.random() < 0.05 and len(pk) > 1:  # two entries of one stream in one record
                cut = int(rng.integers(1, len(pk)))
                entries += [entry_of(s, pk[:cut]), entry_of(s, pk[cut:])]
            else:
                entries.append(entry_of(s, pk))
        if rng.random() < 0.05 and entries:  # a corrupt entry
            bad = dict(entries[0])
            bad["seq"] = bad["seq"][:-1]
            entries.insert(int(rng.integers(0, len(entries))), bad)
        order = rng.permutation(len(entries))
        parts = int(rng.integers(1, 4))  # the edge's records per partition
        for r in range(parts):
            pair.do("on_rtp_batch", batch([entries[int(q)] for q in order[r::parts]], flush, seq=k * 4 + r))
        for i in range(streams):
            if bound_at[i] == k + 1:  # late binding: replays pending RTP
                pair.do("on_binding", binding(i, calls[i], (senders[i].pt,), T0, encrypted=encrypted[i]))
        if rng.random() < 0.08 * churn:  # codec change (re-INVITE on the same port): new version, old closed
            i = int(rng.integers(0, streams))
            if bound_at[i] <= k:
                old = versions[i]
                versions[i] += 1
                new_pt = int(rng.choice([0, 8]))
                pair.do("on_binding", binding(i, calls[i], (new_pt,), flush, version=versions[i]))
                pair.do("on_binding", binding(i, calls[i], (senders[i].pt,), T0, until=flush, version=old))
                senders[i].pt = new_pt
        if rng.random() < 0.05 * churn:  # a stream's state saved and restored (a Faust table round trip)
            kk = key(int(rng.integers(0, streams)))
            st_f, st_s = pair.fast.snapshot_stream(kk), pair.slow.snapshot_stream(kk)
            assert st_f == st_s
            pair.fast.restore_stream(kk, st_f)
            pair.slow.restore_stream(kk, st_s)
        if rng.random() < 0.04 * churn:  # a call ends: its binding closes
            i = int(rng.integers(0, streams))
            if bound_at[i] <= k:
                pair.do("on_binding", binding(i, calls[i], (senders[i].pt,), T0, until=flush,
                                              version=versions[i]))
        if k % 2:
            pair.do("expire", flush + 50_000)
        if state_every and k % state_every == 0:
            pair.same_state()
    pair.same_state()
    pair.do("flush_all", T0 + 10_000_000)
    pair.same_state()
    assert pair.slow._fast_entries == 0
    return pair


@pytest.mark.parametrize("seed", range(30))
def test_vectorised_equals_per_stream_messy(seed: int) -> None:
    pair = scenario(seed, 16000, messy=0.25)
    assert pair.fast._fast_entries > 5  # the vectorised path was taken (and the rest was not)


@pytest.mark.parametrize("seed", range(10))
def test_vectorised_equals_per_stream_mostly_clean(seed: int) -> None:
    pair = scenario(100 + seed, 16000, messy=0.03, streams=20)
    assert pair.fast._fast_entries > 150


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_per_stream_at_8k(seed: int) -> None:
    pair = scenario(200 + seed, 8000, messy=0.1)
    assert pair.fast._fast_entries > 20


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_equals_per_stream_long_streams(seed: int) -> None:
    """Long enough (> 1024 packets) for the jitter buffers to prune their played-sequence memory."""
    pair = scenario(300 + seed, 16000, messy=0.02, streams=6, intervals=260, churn=0.1, codecs=(0, 8), fast_min=1,
                    state_every=53)
    assert pair.fast._fast_entries > 600


def test_jitter_rows_equal_add_arrays_over_pruning() -> None:
    """plan_rows/commit_rows leave the state add_arrays leaves, batch after batch, across the pruning
    of the played-sequence memory (> 1024 packets) and a switch back to add_arrays in the middle."""
    from streams.core.jitter import JitterBuffer, commit_rows, plan_rows

    rng = np.random.default_rng(5)
    a = [JitterBuffer(8000, 60, 1000, T0) for _ in range(3)]
    b = [JitterBuffer(8000, 60, 1000, T0) for _ in range(3)]
    seq0 = [65500, 100, 3000]
    for k in range(700):
        seq = np.array([[(s + 5 * k + j) & 0xFFFF for j in range(5)] for s in seq0], dtype=np.uint16)
        ts = np.array([[(160 * (5 * k + j) + 7 * i) & 0xFFFFFFFF for j in range(5)] for i in range(3)], dtype=np.uint32)
        cap = np.array([[T0 + 20_000 * (5 * k + j) + int(rng.integers(0, 2000)) for j in range(5)] for _ in range(3)],
                       dtype=np.int64)
        cap = np.maximum.accumulate(cap, axis=1)
        off = np.arange(6, dtype=np.int64) * 160
        pay = bytes(800)
        pt = np.zeros(5, dtype=np.uint8)
        for i in range(3):
            a[i].add_arrays(1, seq[i], ts[i], cap[i], pt, off, pay)
        plan = plan_rows(b, [1, 1, 1], seq, ts, cap)
        use_rows = k > 3 and k % 331 != 0  # sometimes the per-buffer call on the same buffers
        if use_rows:
            assert plan.ok.all()
            commit_rows(b, plan, [0, 1, 2])
        else:
            for i in range(3):
                b[i].add_arrays(1, seq[i], ts[i], cap[i], pt, off, pay)
        if k in (250, 499, 698, 699):  # rarely: a snapshot materialises the lazily kept ranges
            assert [x.snapshot() for x in a] == [x.snapshot() for x in b], k
    assert [x.stats for x in a] == [x.stats for x in b]
