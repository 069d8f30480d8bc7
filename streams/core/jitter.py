"""Per-stream jitter buffer, vectorised over whole RtpBatch entries (numpy), driven by capture time.

One buffer per (stream key, speaker). Packets are ordered by their extended 16-bit sequence number
(wrap handled with :func:`spanscribe.protocols.rtp.seq_delta`, applied to numpy arrays), duplicates
are dropped, and packets whose slot was already played out are counted as late. The buffer releases
the contiguous run that follows the last packet played; a gap is waited for until the newest capture
time is ``window_ms`` past the arrival of the oldest packet held, then skipped (the loss stays a gap
in the timeline, which the caller fills with silence from the RTP timestamps).

Every released packet gets a playout position ``pos_ticks``: RTP clock ticks from ``origin_us``
(the call start), from its RTP timestamp, anchored to capture time at the stream's first packet. A new
SSRC, a sequence jump, or an RTP timestamp that disagrees with capture time by more than
``max_gap_ms`` re-anchors the timeline at ``max(capture position, end of what was played)``, so the
output stays monotonic and close to call time (ARCHITECTURE.md "Time"; RFC 3550 §5.1, A.1, A.8).

Time never comes from a clock: ``now`` is the newest capture time seen or an ``advance(now_us)``.
"""
from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from schemas.rtp_columns import StreamColumns
from spanscribe.protocols.rtp import seq_delta, ts_delta

__all__ = ["Frames", "JitterBuffer", "JitterStats", "RowsPlan", "commit_rows", "gather_payloads", "plan_rows"]

I64 = npt.NDArray[np.int64]
MAX_SEQ_JUMP = 3000  # a bigger sequence jump is a restarted sender (aiortc resets at 3000 too)
_RECENT = 1024  # how many played sequence numbers are remembered to tell duplicates from late packets


def _seq_delta(ref: int, seq: npt.NDArray[Any]) -> I64:
    """Vectorised :func:`seq_delta` (same modular formula, on int64 arrays)."""
    return cast(I64, seq_delta(cast(int, np.int64(ref)), cast(int, seq.astype(np.int64))))


def _ts_delta(ref: int, ts: npt.NDArray[Any]) -> I64:
    """Vectorised :func:`ts_delta` (same modular formula, on int64 arrays)."""
    return cast(I64, ts_delta(cast(int, np.int64(ref)), cast(int, ts.astype(np.int64))))


_W = 15.0 / 16.0


def _jitter_rows(jitter: npt.NDArray[np.float64], d: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RFC 3550 A.8 ``J += (|D| - J) / 16`` over the m columns of ``d`` (arrival order), for each row.

    Closed form ``J * w**m + sum_i w**(m-1-i) * |D_i| / 16`` (w = 15/16), the sum taken strictly left to
    right (``cumsum``), never by BLAS or pairwise summation: one buffer and a batch of rows give the
    same bits.
    """
    m = d.shape[1]
    weights = _W ** np.arange(m - 1, -1, -1, dtype=np.float64)
    res: npt.NDArray[np.float64] = jitter * _W ** m + np.cumsum(weights * d, axis=1)[:, -1] / 16.0
    return res


def gather_payloads(payloads: bytes, offsets: I64, order: I64) -> tuple[bytes, I64]:
    """Reorder/select the packets ``order`` of a joined payload buffer. Returns (bytes, new offsets)."""
    lens = offsets[1:] - offsets[:-1]
    sel_lens = lens[order]
    new_off = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(sel_lens, out=new_off[1:])
    total = int(new_off[-1])
    if total == 0:
        return b"", new_off
    starts = offsets[:-1][order]
    idx = np.repeat(starts - new_off[:-1], sel_lens) + np.arange(total, dtype=np.int64)
    buf = np.frombuffer(payloads, dtype=np.uint8)
    return buf[idx].tobytes(), new_off


@dataclass(frozen=True, slots=True)
class Frames:
    """Packets released in playout order (columns; ``count`` of them).

    ``pos_ticks``: playout position, RTP ticks from the origin (call start). ``reset``: True where the
    timeline was re-anchored before this packet (new SSRC, sequence or timestamp jump): the caller
    must not fill silence across it. Packet i's payload is ``payloads[offsets[i]:offsets[i+1]]``.
    """

    pos_ticks: I64
    capture_us: I64
    payload_type: npt.NDArray[np.uint8]
    reset: npt.NDArray[np.bool_]
    offsets: I64
    payloads: bytes
    ssrc: int

    @property
    def count(self) -> int:
        return int(self.pos_ticks.shape[0])

    @staticmethod
    def empty(ssrc: int = 0) -> Frames:
        z = np.zeros(0, dtype=np.int64)
        return Frames(z, z, np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=bool), np.zeros(1, dtype=np.int64), b"", ssrc)


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters of one buffer. ``jitter_ms``: RFC 3550 A.8 interarrival jitter, milliseconds."""

    packets: int
    lost: int
    duplicates: int
    late: int
    jitter_ms: float
    ssrc: int


class JitterBuffer:
    """Reorders one RTP stream.

    Args:
        clock_rate: RTP clock of the stream (Hz).
        window_ms: how long a gap is waited for (capture time).
        max_gap_ms: an RTP timestamp further than this from its capture-time position re-anchors.
        origin_us: capture time that is position 0 (the call start), microseconds.
        non_audio_pts: payload types ordered and counted but not placed on the timeline (RFC 4733
            telephone-event, CN): their released ``pos_ticks`` is -1, as for empty payloads.
    """

    def __init__(self, clock_rate: int, window_ms: int = 200, max_gap_ms: int = 1000, origin_us: int = 0,
                 non_audio_pts: Iterable[int] = ()) -> None:
        self.clock_rate = clock_rate
        self._non_audio = np.asarray(sorted(set(non_audio_pts)), dtype=np.uint8)
        self.window_us = window_ms * 1000
        self.max_gap_ticks = max_gap_ms * clock_rate // 1000
        self.origin_us = origin_us
        self._ssrc: int | None = None
        self._now_us: int | None = None
        # extended sequence numbers
        self._ref: int | None = None  # highest extended seq seen
        self._played: int | None = None  # last extended seq released
        self._recent: set[int] = set()
        # played ext seqs [_run_lo, _run_hi] not yet in _recent (commit_rows appends ranges lazily;
        # every other reader calls _sync first): all of _recent is below _run_lo while it is non-empty
        self._run_lo = 0
        self._run_hi = -1
        # held packets (sorted by ext seq)
        self._ext = np.zeros(0, dtype=np.int64)
        self._ts = np.zeros(0, dtype=np.int64)
        self._cap = np.zeros(0, dtype=np.int64)
        self._pt = np.zeros(0, dtype=np.uint8)
        self._off = np.zeros(1, dtype=np.int64)
        self._pay = b""
        # timeline
        self._anchor_ts: int | None = None  # extended RTP ts at the anchor
        self._anchor_pos = 0
        self._last_pos: int | None = None
        self._last_ts: int | None = None
        self._step = 0  # last positive RTP ts increment between played packets (ticks)
        self._pending_reset = False
        # statistics
        self._received = 0  # unique packets of the current epoch (SSRC / restart)
        self._base: int | None = None
        self._lost_done = 0
        self._packets = 0
        self._dups = 0
        self._late = 0
        self._jitter = 0.0  # in ticks
        self._transit: float | None = None

    # -- input ----------------------------------------------------------------------------------
    def add_columns(self, cols: StreamColumns, mask: npt.NDArray[np.bool_] | None = None) -> Frames:
        """Add the packets of one entry (``mask`` selects which). Returns what can be played now."""
        idx = np.arange(cols.count, dtype=np.int64) if mask is None else np.flatnonzero(mask).astype(np.int64)
        if idx.size == 0:
            return self._release(force=False)
        payloads, off = gather_payloads(cols.payloads, cols.payload_offsets, idx)
        return self.add_arrays(cols.ssrc, cols.seq[idx], cols.rtp_ts[idx], cols.capture_us[idx],
                               cols.payload_type[idx], off, payloads)

    def add_arrays(self, ssrc: int, seq: npt.NDArray[Any], rtp_ts: npt.NDArray[Any], capture_us: npt.NDArray[Any],
                   payload_type: npt.NDArray[Any], offsets: I64, payloads: bytes) -> Frames:
        """Like :meth:`add_columns` from plain arrays in capture order (``offsets`` has n + 1 entries)."""
        self._sync()
        n = int(seq.shape[0])
        if n == 0:
            return self._release(force=False)
        fast = self._fast_path(ssrc, seq, rtp_ts, capture_us, payload_type, offsets, payloads)
        if fast is not None:
            return fast
        outs: list[Frames] = []
        if self._ssrc is not None and ssrc != self._ssrc:
            outs.append(self._restart())
        self._ssrc = ssrc
        seq64 = seq.astype(np.int64)
        ts64 = rtp_ts.astype(np.int64)
        cap = capture_us.astype(np.int64)
        pt = payload_type.astype(np.uint8)
        start = 0
        while start < n:
            if self._ref is None:
                self._ref = int(seq64[start]) + (1 << 16)  # keep extended numbers positive
                self._base = self._ref
            ext = self._ref + _seq_delta(self._ref & 0xFFFF, seq64[start:])
            jump = np.flatnonzero(np.abs(ext - self._ref) > MAX_SEQ_JUMP)
            stop = n if jump.size == 0 else start + int(jump[0])
            if stop > start:
                sl = slice(start, stop)
                self._accept(ext[: stop - start], ts64[sl], cap[sl], pt[sl], offsets[start:stop + 1] - offsets[start],
                             payloads[int(offsets[start]):int(offsets[stop])])
            if stop < n:  # a restarted sender: play out what is held, start a new epoch
                outs.append(self._restart())
            start = stop
        outs.append(self._release(force=False))
        return _concat(outs, ssrc)

    def _fast_path(self, ssrc: int, seq: npt.NDArray[Any], rtp_ts: npt.NDArray[Any], capture_us: npt.NDArray[Any],
                   payload_type: npt.NDArray[Any], offsets: I64, payloads: bytes) -> Frames | None:
        """The common case, without sorting or set lookups: nothing held and the batch continues the
        played sequence in order. Returns None when the general path is needed."""
        if (ssrc != self._ssrc or self._ref is None or self._played is None or self._ext.size
                or self._played != self._ref):
            return None
        ext = self._ref + _seq_delta(self._ref & 0xFFFF, seq)
        n = int(ext.shape[0])
        if int(ext[0]) != self._played + 1 or int(ext[-1]) != self._played + n or (n > 2 and not bool(
                np.all(ext[1:] - ext[:-1] == 1))):
            return None
        cap = capture_us.astype(np.int64)
        ts64 = rtp_ts.astype(np.int64)
        now = int(cap.max())
        if self._now_us is None or now > self._now_us:
            self._now_us = now
        self._jitter_update(ts64, cap)
        self._received += n
        self._packets += n
        self._ref = self._played = int(ext[-1])
        self._remember(ext)
        return self._place(ext, ts64, cap, payload_type.astype(np.uint8), offsets - offsets[0], payloads)

    def _remember(self, ext: I64) -> None:
        self._sync()
        self._recent.update(ext.tolist())
        if len(self._recent) > _RECENT and self._played is not None:
            floor = self._played - _RECENT // 2  # prune to half, so pruning is rare
            self._recent = {e for e in self._recent if e > floor}

    def advance(self, now_us: int) -> Frames:
        """Move capture time on without packets (an idle stream): releases gaps past the window."""
        if self._now_us is None or now_us > self._now_us:
            self._now_us = now_us
        return self._release(force=False)

    def flush(self) -> Frames:
        """Release everything held (stream end)."""
        return self._release(force=True)

    # -- internals ------------------------------------------------------------------------------
    def _accept(self, ext: I64, ts: I64, cap: I64, pt: npt.NDArray[np.uint8], off: I64, pay: bytes) -> None:
        n = ext.shape[0]
        # first occurrence of each ext within this batch (capture order)
        _, first = np.unique(ext, return_index=True)
        keep = np.zeros(n, dtype=bool)
        keep[first] = True
        dups = n - int(first.shape[0])
        if self._ext.size:
            held = np.isin(ext, self._ext)
            dups += int(np.count_nonzero(held & keep))
            keep &= ~held
        if self._played is not None:
            old = keep & (ext <= self._played)
            if old.any():
                recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
                was_played = old & np.isin(ext, recent)
                dups += int(np.count_nonzero(was_played))
                late = old & ~was_played
                self._late += int(np.count_nonzero(late))
                self._received += int(np.count_nonzero(late))
                keep &= ~old
        self._dups += dups
        now = int(cap.max())
        if self._now_us is None or now > self._now_us:
            self._now_us = now
        sel = np.flatnonzero(keep).astype(np.int64)
        if sel.size == 0:
            return
        self._jitter_update(ts[sel], cap[sel])
        self._received += int(sel.size)
        self._packets += int(sel.size)
        self._ref = max(int(self._ref or 0), int(ext[sel].max()))
        sel_pay, sel_off = gather_payloads(pay, off, sel)
        # merge with the held packets, sorted by ext
        all_ext = np.concatenate([self._ext, ext[sel]])
        order = np.argsort(all_ext, kind="stable").astype(np.int64)
        merged_off = np.concatenate([self._off, self._off[-1] + sel_off[1:]])
        self._pay, self._off = gather_payloads(self._pay + sel_pay, merged_off, order)
        self._ext = all_ext[order]
        self._ts = np.concatenate([self._ts, ts[sel]])[order]
        self._cap = np.concatenate([self._cap, cap[sel]])[order]
        self._pt = np.concatenate([self._pt, pt[sel]])[order]

    def _jitter_update(self, ts: I64, cap: I64) -> None:
        # RFC 3550 A.8: J += (|D| - J) / 16 over arrival order, in closed form for a batch.
        arrival = cap.astype(np.float64) * (self.clock_rate / 1e6)
        transit = arrival - ts.astype(np.float64)
        prev = np.concatenate([[transit[0] if self._transit is None else self._transit], transit[:-1]])
        d = np.abs(transit - prev)
        if self._transit is None:
            d = d[1:]
        self._transit = float(transit[-1])
        if d.shape[0] == 0:
            return
        self._jitter = float(_jitter_rows(np.array([self._jitter]), d[None, :])[0])

    def _release(self, force: bool) -> Frames:
        n = self._ext.shape[0]
        if n == 0:
            return Frames.empty(self._ssrc or 0)
        count = 0
        nxt = None if self._played is None else self._played + 1
        ext = self._ext
        while count < n:
            head = int(ext[count])
            if nxt is not None and head <= nxt:
                pass  # contiguous (head == nxt)
            else:
                # a gap (or the very first packet): wait until the oldest held packet is window old
                waited = (self._now_us or 0) - int(self._cap[count:].min())
                if not force and waited < self.window_us:
                    break
            # the contiguous run from head
            run = ext[count:] - head - np.arange(n - count, dtype=np.int64)
            brk = np.flatnonzero(run != 0)
            end = n if brk.size == 0 else count + int(brk[0])
            count = end
            nxt = int(ext[end - 1]) + 1
        if count == 0:
            return Frames.empty(self._ssrc or 0)
        out_ext = ext[:count]
        frames = self._place(out_ext, self._ts[:count], self._cap[:count], self._pt[:count],
                             self._off[: count + 1].copy(), self._pay[: int(self._off[count])])
        self._played = int(out_ext[-1])
        self._remember(out_ext)
        self._ext = self._ext[count:]
        self._ts = self._ts[count:]
        self._cap = self._cap[count:]
        self._pt = self._pt[count:]
        self._pay = self._pay[int(self._off[count]):]
        self._off = self._off[count:] - self._off[count]
        return frames

    def _place(self, ext: I64, ts: I64, cap: I64, pt: npt.NDArray[np.uint8], off: I64, pay: bytes) -> Frames:
        n = ext.shape[0]
        pos = np.full(n, -1, dtype=np.int64)
        reset = np.zeros(n, dtype=bool)
        # only audio packets drive the timeline: RFC 4733 events keep the timestamp of the event start
        # (an empty payload never moves the timeline either: stripped events, keep-alives)
        lens = off[1:] - off[:-1]
        timeline = lens > 0
        if self._non_audio.size:
            timeline &= ~np.isin(pt, self._non_audio)
        audio = np.flatnonzero(timeline)
        if audio.size:
            pa, ra = self._place_audio(ts[audio].astype(np.int64), cap[audio])
            pos[audio] = pa
            reset[audio] = ra
        return Frames(pos, cap, pt, reset, off, pay, self._ssrc or 0)

    def _place_audio(self, ts: I64, cap: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
        n = ts.shape[0]
        if self._last_ts is None:
            ets = ts + (1 << 32)
        else:
            ets = self._last_ts + _ts_delta(self._last_ts & 0xFFFFFFFF, ts)
        cap_pos = (cap - self.origin_us) * self.clock_rate // 1_000_000
        pos = np.zeros(n, dtype=np.int64)
        reset = np.zeros(n, dtype=bool)
        i = 0
        while i < n:
            if self._anchor_ts is None or self._pending_reset:
                end_prev = (self._last_pos + self._step) if self._last_pos is not None else 0
                # the earliest start the packets released with it imply (network delay only adds)
                implied = cap_pos[i:] - (ets[i:] - ets[i])
                near = np.abs(implied - implied[0]) <= self.max_gap_ticks
                self._anchor_pos = max(int(implied[near].min()), end_prev, 0)
                self._anchor_ts = int(ets[i])
                reset[i] = self._last_pos is not None
                self._pending_reset = False
            p = self._anchor_pos + (ets[i:] - self._anchor_ts)
            bad = np.abs(p - cap_pos[i:]) > self.max_gap_ticks + self.window_us * self.clock_rate // 1_000_000
            if self._last_pos is not None and not reset[i]:
                bad[0] |= bool(p[0] < self._last_pos)  # backwards in time: a restarted timestamp
            bad[1:] |= p[1:] < p[:-1]
            bad[0] &= not reset[i]  # a fresh anchor is right by construction
            nb = np.flatnonzero(bad)
            stop = n if nb.size == 0 else i + int(nb[0])
            if stop > i:
                pos[i:stop] = p[: stop - i]
                steps = np.diff(ets[max(i - 1, 0):stop])
                pos_steps = steps[steps > 0]
                if pos_steps.size:
                    self._step = int(pos_steps[-1])
                self._last_pos = int(pos[stop - 1])
                self._last_ts = int(ets[stop - 1])
            if stop < n:
                self._pending_reset = True
            i = stop
        self._last_ts = int(ets[-1])
        return pos, reset

    def _restart(self) -> Frames:
        """Play out what is held and start a new epoch (new SSRC or restarted sequence numbers)."""
        out = self._release(force=True)
        if self._base is not None and self._ref is not None:
            self._lost_done += max(0, (self._ref - self._base + 1) - self._received)
        self._ref = None
        self._base = None
        self._played = None
        self._recent = set()
        self._run_lo, self._run_hi = 0, -1
        self._received = 0
        self._last_ts = None
        self._transit = None
        self._pending_reset = True
        return out

    # -- statistics and state -------------------------------------------------------------------
    @property
    def stats(self) -> JitterStats:
        lost = self._lost_done
        if self._base is not None and self._ref is not None:
            lost += max(0, (self._ref - self._base + 1) - self._received)
        return JitterStats(self._packets, lost, self._dups, self._late,
                           round(self._jitter * 1000.0 / self.clock_rate, 3), self._ssrc or 0)

    @property
    def held(self) -> int:
        """Packets waiting for a gap."""
        return int(self._ext.shape[0])

    def _sync(self) -> None:
        """Move the lazily kept range of played sequence numbers into ``_recent``."""
        if self._run_lo <= self._run_hi:
            self._recent.update(range(self._run_lo, self._run_hi + 1))
            self._run_lo, self._run_hi = 0, -1

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state (held payloads base64: audio only, events are stripped by the caller)."""
        self._sync()
        return {
            "clock": self.clock_rate, "window_us": self.window_us, "max_gap_ticks": self.max_gap_ticks,
            "origin_us": self.origin_us, "non_audio": self._non_audio.tolist(), "ssrc": self._ssrc, "now": self._now_us, "ref": self._ref,
            "played": self._played, "recent": sorted(self._recent), "ext": self._ext.tolist(),
            "ts": self._ts.tolist(), "cap": self._cap.tolist(), "pt": self._pt.tolist(), "off": self._off.tolist(),
            "pay": base64.b64encode(self._pay).decode("ascii"), "anchor_ts": self._anchor_ts,
            "anchor_pos": self._anchor_pos, "last_pos": self._last_pos, "last_ts": self._last_ts, "step": self._step,
            "pending_reset": self._pending_reset, "received": self._received, "base": self._base,
            "lost_done": self._lost_done, "packets": self._packets, "dups": self._dups, "late": self._late,
            "jitter": self._jitter, "transit": self._transit,
        }

    @classmethod
    def restore(cls, s: dict[str, Any]) -> JitterBuffer:
        jb = cls(int(s["clock"]), non_audio_pts=s["non_audio"])
        jb.window_us = int(s["window_us"])
        jb.max_gap_ticks = int(s["max_gap_ticks"])
        jb.origin_us = int(s["origin_us"])
        jb._ssrc = s["ssrc"]
        jb._now_us = s["now"]
        jb._ref = s["ref"]
        jb._played = s["played"]
        jb._recent = set(s["recent"])
        jb._ext = np.asarray(s["ext"], dtype=np.int64)
        jb._ts = np.asarray(s["ts"], dtype=np.int64)
        jb._cap = np.asarray(s["cap"], dtype=np.int64)
        jb._pt = np.asarray(s["pt"], dtype=np.uint8)
        jb._off = np.asarray(s["off"], dtype=np.int64)
        jb._pay = base64.b64decode(s["pay"])
        jb._anchor_ts = s["anchor_ts"]
        jb._anchor_pos = int(s["anchor_pos"])
        jb._last_pos = s["last_pos"]
        jb._last_ts = s["last_ts"]
        jb._step = int(s["step"])
        jb._pending_reset = bool(s["pending_reset"])
        jb._received = int(s["received"])
        jb._base = s["base"]
        jb._lost_done = int(s["lost_done"])
        jb._packets = int(s["packets"])
        jb._dups = int(s["dups"])
        jb._late = int(s["late"])
        jb._jitter = float(s["jitter"])
        jb._transit = s["transit"]
        return jb


# -- many buffers at once ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RowsPlan:
    """The in-order fast path of S buffers at once: row i is one batch of n packets for buffer i.

    ``ok[i]``: buffer i's ``add_arrays`` would take its fast path with nothing re-anchored, so
    ``pos[i]`` (playout positions, ticks) is exactly what it would return. Nothing is changed until
    :func:`commit_rows`.
    """

    ok: npt.NDArray[np.bool_]
    pos: I64
    ets: I64
    ref: I64
    step: I64
    jitter: npt.NDArray[np.float64]
    transit: npt.NDArray[np.float64]
    cap_max: I64


def plan_rows(jbs: Sequence[JitterBuffer], ssrc: Sequence[int], seq: npt.NDArray[np.uint16],
              rtp_ts: npt.NDArray[np.uint32], capture_us: I64) -> RowsPlan:
    """Vectorised :meth:`JitterBuffer.add_arrays` for the dominant case, without changing anything.

    ``seq``, ``rtp_ts``, ``capture_us``: shape (S, n), row i the packets (capture order) for ``jbs[i]``
    with SSRC ``ssrc[i]``. A row is ``ok`` when its buffer holds nothing, has played up to the last
    sequence number seen, has the same SSRC, the row continues the sequence in order (ext seq + 1
    each), its timeline is anchored with no reset pending, and no packet would re-anchor it
    (:meth:`JitterBuffer._place_audio`). Every payload must be audio and non-empty (the caller checks).
    Arithmetic is the per-buffer one element for element, so the results are identical.
    """
    s, n = seq.shape
    ready = [jb._ssrc == sc and jb._ref is not None and jb._played == jb._ref and not jb._ext.size
             and jb._last_ts is not None and jb._anchor_ts is not None and not jb._pending_reset
             and jb._transit is not None and jb._last_pos is not None and not jb._non_audio.size
             for jb, sc in zip(jbs, ssrc, strict=True)]
    jr = [jb if r else None for jb, r in zip(jbs, ready, strict=True)]
    ref = np.array([jb._ref if jb else 0 for jb in jr], dtype=np.int64)
    last_ts = np.array([jb._last_ts if jb else 0 for jb in jr], dtype=np.int64)
    anchor_ts = np.array([jb._anchor_ts if jb else 0 for jb in jr], dtype=np.int64)
    anchor_pos = np.array([jb._anchor_pos if jb else 0 for jb in jr], dtype=np.int64)
    last_pos = np.array([jb._last_pos if jb else 0 for jb in jr], dtype=np.int64)
    origin = np.array([jb.origin_us if jb else 0 for jb in jr], dtype=np.int64)
    clock = np.array([jb.clock_rate if jb else 8000 for jb in jr], dtype=np.int64)
    thr = np.array([jb.max_gap_ticks + jb.window_us * jb.clock_rate // 1_000_000 if jb else 0 for jb in jr],
                   dtype=np.int64)
    tick = np.array([jb.clock_rate / 1e6 if jb else 0.0 for jb in jr], dtype=np.float64)
    transit0 = np.array([jb._transit if jb else 0.0 for jb in jr], dtype=np.float64)
    jitter0 = np.array([jb._jitter if jb else 0.0 for jb in jr], dtype=np.float64)
    step0 = np.array([jb._step if jb else 0 for jb in jr], dtype=np.int64)
    ok = np.array(ready, dtype=bool)
    seq64 = seq.astype(np.int64)
    ts64 = rtp_ts.astype(np.int64)
    # extended sequence numbers minus ref: 1, 2, ..., n in order (seq_delta, RFC 3550 A.1)
    d_ext = ((seq64 - (ref & 0xFFFF)[:, None] + 0x8000) & 0xFFFF) - 0x8000
    ok &= (d_ext == np.arange(1, n + 1, dtype=np.int64)).all(axis=1)
    # timeline (_place_audio with an anchor and no reset): extended ts, position, re-anchor tests
    ets = last_ts[:, None] + (((ts64 - (last_ts & 0xFFFFFFFF)[:, None] + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
    cap_pos = (capture_us - origin[:, None]) * clock[:, None] // 1_000_000
    pos = cast(I64, anchor_pos[:, None] + (ets - anchor_ts[:, None]))
    bad = np.abs(pos - cap_pos) > thr[:, None]
    bad[:, 0] |= pos[:, 0] < last_pos
    bad[:, 1:] |= pos[:, 1:] < pos[:, :-1]
    ok &= ~bad.any(axis=1)
    # _step: the last positive RTP ts increment within the batch
    step = step0
    if n > 1:
        steps = ets[:, 1:] - ets[:, :-1]
        positive = steps > 0
        last = (n - 2) - np.argmax(positive[:, ::-1], axis=1)
        step = np.where(positive.any(axis=1), steps[np.arange(s), last], step0)
    # RFC 3550 A.8 interarrival jitter (_jitter_update with a previous transit)
    transit = capture_us.astype(np.float64) * tick[:, None] - ts64.astype(np.float64)
    prev = np.concatenate([transit0[:, None], transit[:, :-1]], axis=1)
    jitter = _jitter_rows(jitter0, np.abs(transit - prev))
    return RowsPlan(ok, pos, ets, ref, step, jitter, transit[:, -1].copy(), capture_us.max(axis=1))


def commit_rows(jbs: Sequence[JitterBuffer], plan: RowsPlan, rows: Sequence[int]) -> None:
    """Apply ``plan`` to the buffers of ``rows`` (all ``plan.ok``): the state their ``add_arrays`` leaves."""
    n = int(plan.pos.shape[1])
    ref = plan.ref.tolist()
    step = plan.step.tolist()
    jitter = plan.jitter.tolist()
    transit = plan.transit.tolist()
    cap_max = plan.cap_max.tolist()
    last_pos = plan.pos[:, -1].tolist()
    last_ts = plan.ets[:, -1].tolist()
    for i in rows:
        jb = jbs[i]
        now = cap_max[i]
        if jb._now_us is None or now > jb._now_us:
            jb._now_us = now
        jb._jitter = jitter[i]
        jb._transit = transit[i]
        jb._received += n
        jb._packets += n
        last = ref[i] + n
        jb._ref = jb._played = last
        # _remember(range(ref + 1, last + 1)) kept as a range: same set, same pruning (below)
        if jb._run_lo > jb._run_hi:
            jb._run_lo = ref[i] + 1
        jb._run_hi = last
        if len(jb._recent) + (last - jb._run_lo + 1) > _RECENT:
            floor = last - _RECENT // 2
            if jb._recent:
                jb._recent = {e for e in jb._recent if e > floor}
            jb._run_lo = max(jb._run_lo, floor + 1)
        jb._step = step[i]
        jb._last_pos = last_pos[i]
        jb._last_ts = last_ts[i]


def _concat(parts: list[Frames], ssrc: int) -> Frames:
    parts = [p for p in parts if p.count]
    if not parts:
        return Frames.empty(ssrc)
    if len(parts) == 1:
        return parts[0]
    offs = [parts[0].offsets]
    base = int(parts[0].offsets[-1])
    for p in parts[1:]:
        offs.append(p.offsets[1:] + base)
        base += int(p.offsets[-1])
    return Frames(np.concatenate([p.pos_ticks for p in parts]), np.concatenate([p.capture_us for p in parts]),
                  np.concatenate([p.payload_type for p in parts]), np.concatenate([p.reset for p in parts]),
                  np.concatenate(offs), b"".join(p.payloads for p in parts), parts[-1].ssrc)
