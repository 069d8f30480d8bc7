"""The join of RTP to calls and per-speaker audio: RtpBatch records + MediaBindings -> AudioChunks.

One :class:`MediaJoiner` per worker (the media agent). For every ``RtpStreamBatch`` entry it looks the
binding valid at each packet's capture time up in a :class:`~streams.core.binding.BindingIndex`
(RTP is keyed by its destination tuple: ARCHITECTURE.md "The join by SDP tuple"), keeps RTP that
arrives before its binding in a bounded pending buffer and replays it when the binding comes, and
runs each (stream key, call, speaker) through a :class:`~streams.core.jitter.JitterBuffer`, a decoder
per payload type and a resampler to the STT rate. Both directions stay separate streams.

Never transcribed: RFC 4733 telephone-events and RFC 3389 comfort noise (their payloads are dropped
before anything is buffered, so a DTMF digit is never stored, snapshotted or logged; the time they
cover becomes silence), encrypted media (SRTP/ZRTP: noted), unknown codecs (noted).

Times: an AudioChunk's ``start_s`` is seconds from the call start (``MediaBinding.call_start_us``) of
its first sample, from RTP timestamps anchored to capture time. Within a stream consecutive chunks are
contiguous (``start_s`` of the next = end of the previous) across losses and gaps up to
``max_gap_ms`` (filled with silence); a longer silence (DTX, hold), an SSRC change or a timestamp jump
starts a new chunk at its own call time. No wall clock: "now" is the newest capture time seen.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.rtp_columns import ColumnError, StreamColumns, pack_stream, unpack_stream

from .binding import Binding, BindingIndex
from .codecs import ALAW_TABLE, NON_AUDIO, ULAW_TABLE, Decoder, Resampler, decoder_for
from .codecs.plc import TAIL_MS, conceal
from .codecs.resample import process_rows, rows_supported
from .jitter import Frames, JitterBuffer, commit_rows, gather_payloads, plan_rows

__all__ = ["AudioChunk", "MediaJoiner", "MediaOut", "Note", "StreamEnded", "Unmatched"]

log = logging.getLogger(__name__)
I64 = npt.NDArray[np.int64]


# -- outputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class AudioChunk:
    """Decoded audio of one call speaker: int16 mono at ``sample_rate`` (the STT rate).

    ``start_s``: call time (seconds from call start) of the first sample.
    """

    call_key: str
    site: str
    call_id: str
    speaker: str
    role: str | None
    stream_key: str
    start_s: float
    sample_rate: int
    pcm: npt.NDArray[np.int16] = field(repr=False)

    @property
    def end_s(self) -> float:
        return self.start_s + float(self.pcm.shape[0]) / self.sample_rate



_TAIL_8K = 8000 * TAIL_MS // 1000


def _keep_tail(st: _Stream, pcm: npt.NDArray[np.int16], rate: int) -> None:
    """Remember the last TAIL_MS of decoded audio (codec rate) for concealing a following loss."""
    n = rate * TAIL_MS // 1000
    if pcm.size >= n or st.tail is None:
        st.tail = pcm[-n:].copy()
    else:
        st.tail = np.concatenate([st.tail, pcm])[-n:]

@dataclass(frozen=True, slots=True)
class StreamEnded:
    """A speaker stream ended (its binding closed, or it went idle). ``stats``: a StreamStatsEvent dict."""

    call_key: str
    site: str
    call_id: str
    speaker: str
    stream_key: str
    ts_us: int
    reason: str  # "closed" | "idle"
    stats: dict[str, Any]

    def to_call_event(self) -> dict[str, Any]:
        """The CallEvent (kind ``stream_ended``) dict."""
        return _call_event(self.site, self.call_id, "stream_ended", self.ts_us, stream=dict(self.stats))


@dataclass(frozen=True, slots=True)
class Note:
    """An operator note about a call (never personal data: no digits, no addresses, no audio)."""

    call_key: str
    site: str
    call_id: str
    ts_us: int
    text: str

    def to_call_event(self) -> dict[str, Any]:
        """The CallEvent (kind ``note``) dict."""
        return _call_event(self.site, self.call_id, "note", self.ts_us, note=self.text)


@dataclass(frozen=True, slots=True, eq=False)
class Unmatched:
    """RTP no binding claimed by its destination within ``pending_s`` (only with ``nat_fallback``).

    ``entry`` is an RtpStreamBatch dict of those packets whose ``stream_key`` is the SOURCE tuple
    ``source_key`` ("site/src_ip/src_port"): the shell re-keys it to a repartition topic by that key and
    hands it back through ``on_rtp_batch(rec, by_source=True)`` on the worker owning that partition.
    """

    source_key: str
    entry: dict[str, Any] = field(repr=False)  # audio payloads: personal data


MediaOut = AudioChunk | StreamEnded | Note | Unmatched


def _call_event(site: str, call_id: str, kind: str, ts_us: int, stream: dict[str, Any] | None = None,
                note: str | None = None) -> dict[str, Any]:
    return {"site": site, "call_id": call_id, "kind": kind, "ts_us": ts_us, "caller": None, "callee": None,
            "start_us": None, "answer_us": None, "end_reason": None, "speakers": [], "stream": stream, "note": note}


# -- per stream state -------------------------------------------------------------------------------
def _ident(stream_key: str, call_id: str, speaker: str, by_source: bool) -> str:
    return f"{stream_key}|{call_id}|{speaker}" + ("|src" if by_source else "")


_OTHER = {"caller": "callee", "callee": "caller", "agent": "customer", "customer": "agent"}


class _Stream:
    """One (stream key, call, speaker): jitter buffer, decoders, resamplers, output position."""

    def __init__(self, b: Binding, stt_rate: int, window_ms: int, max_gap_ms: int) -> None:
        self.stream_key = str(b["stream_key"])
        self.site = str(b["site"])
        self.call_id = str(b["call_id"])
        self.speaker = str(b["speaker"])
        self.role: str | None = b.get("role")
        self.origin_us = int(b["call_start_us"])
        self.encrypted = bool(b["encrypted"])
        self.stt_rate = stt_rate
        self.window_ms = window_ms
        self.max_gap_ms = max_gap_ms
        self.jb: JitterBuffer | None = None
        self.decoders: dict[str, Decoder] = {}  # by "ENC/rate/channels"
        self.resampler: Resampler | None = None
        self.out_pos: int | None = None  # next position (jitter ticks) of the open chunk
        self.tail: npt.NDArray[np.int16] | None = None  # last decoded samples (codec rate), for concealment
        self.codec = ""
        self.audio_samples = 0  # at stt_rate
        self.last_us = 0
        self.close_at_us: int | None = None
        self.packets_encrypted = 0
        self.by_source = bool(b.get("_by_source", False))
        self._call_key = f"{self.site}/{self.call_id}"

    @property
    def ident(self) -> str:
        return _ident(self.stream_key, self.call_id, self.speaker, self.by_source)

    @property
    def call_key(self) -> str:
        return self._call_key

    def snapshot(self) -> dict[str, Any]:
        return {
            "stream_key": self.stream_key, "site": self.site, "call_id": self.call_id, "speaker": self.speaker,
            "role": self.role, "origin_us": self.origin_us, "encrypted": self.encrypted,
            "jb": self.jb.snapshot() if self.jb else None,
            "decoders": {k: d.snapshot() for k, d in sorted(self.decoders.items())},
            "resampler": ([self.resampler.src_rate, self.resampler.snapshot()] if self.resampler else None),
            "out_pos": self.out_pos, "codec": self.codec, "audio_samples": self.audio_samples,
            "last_us": self.last_us, "close_at_us": self.close_at_us, "packets_encrypted": self.packets_encrypted,
            "by_source": self.by_source,
            "tail": self.tail.tolist() if self.tail is not None else None,
        }

    @classmethod
    def restore(cls, s: dict[str, Any], stt_rate: int, window_ms: int, max_gap_ms: int) -> _Stream:
        b = {"stream_key": s["stream_key"], "site": s["site"], "call_id": s["call_id"], "speaker": s["speaker"],
             "role": s["role"], "call_start_us": s["origin_us"], "encrypted": s["encrypted"],
             "_by_source": s.get("by_source", False)}
        st = cls(b, stt_rate, window_ms, max_gap_ms)
        st.jb = JitterBuffer.restore(s["jb"]) if s["jb"] else None
        for k, state in s["decoders"].items():
            enc, rate, ch = k.split("/")
            d = decoder_for(enc, int(rate), int(ch))
            if d is not None:
                d.restore(state)
                st.decoders[k] = d
        if s["resampler"]:
            st.resampler = Resampler(int(s["resampler"][0]), stt_rate)
            st.resampler.restore(s["resampler"][1])
        st.out_pos = s["out_pos"]
        st.codec = s["codec"]
        st.audio_samples = int(s["audio_samples"])
        st.last_us = int(s["last_us"])
        st.close_at_us = s["close_at_us"]
        st.packets_encrypted = int(s["packets_encrypted"])
        tail = s.get("tail")
        st.tail = np.asarray(tail, dtype=np.int16) if tail is not None else None
        return st


@dataclass(frozen=True, slots=True)
class _Cols:
    """The columns of one entry, each computed once (StreamColumns may compute some per access)."""

    stream_key: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    ssrc: int
    seq: npt.NDArray[np.uint16]
    rtp_ts: npt.NDArray[np.uint32]
    capture_us: I64
    payload_type: npt.NDArray[np.uint8]
    payload_len: npt.NDArray[np.uint16]
    payload_offsets: I64
    payloads: bytes

    @staticmethod
    def of(c: StreamColumns) -> _Cols:
        return _Cols(c.stream_key, str(c.src_ip), int(c.src_port), str(c.dst_ip), int(c.dst_port), int(c.ssrc), c.seq, c.rtp_ts, c.capture_us, c.payload_type, c.payload_len,
                     c.payload_offsets, c.payloads)

    @property
    def count(self) -> int:
        return int(self.seq.shape[0])

    def source_entry(self, idx: I64) -> tuple[str, dict[str, Any]]:
        """The packets ``idx`` as an RtpStreamBatch dict keyed by the source tuple."""
        site = self.stream_key.split("/", 1)[0]
        src_key = f"{site}/{self.src_ip}/{self.src_port}"
        off = self.payload_offsets
        pays = [self.payloads[int(off[i]):int(off[i + 1])] for i in idx.tolist()]
        return src_key, pack_stream(stream_key=src_key, src_ip=self.src_ip, src_port=self.src_port,
                                    dst_ip=self.dst_ip, dst_port=self.dst_port, ssrc=self.ssrc,
                                    seq=self.seq[idx].tolist(), rtp_ts=self.rtp_ts[idx].tolist(),
                                    capture_us=self.capture_us[idx].tolist(),
                                    payload_type=self.payload_type[idx].tolist(), marker=[False] * int(idx.size),
                                    payloads=pays)


@dataclass(frozen=True, slots=True)
class _FastRef:
    """What the vectorised path keeps per stream key: the binding last joined and its stream."""

    b: Binding
    ident: str
    st: _Stream
    pmap: dict[int, dict[str, Any]]
    codecs: dict[int, tuple[int, str]]  # per payload type, filled on first use
    blist: list[Binding] | None  # the index's binding list of the key when b was looked up
    lo: int  # lookup(key, t) is b for lo <= t < hi while the index holds blist for the key
    hi: int


_G711_TABLES = np.concatenate([ULAW_TABLE, ALAW_TABLE])


@dataclass(slots=True)
class _Pending:
    first_us: int
    last_us: int
    nbytes: int
    cols: _Cols
    idx: I64


class MediaJoiner:
    """Joins RTP batches to bindings and yields per-speaker audio (see the module docstring).

    Args:
        stt_rate: output sample rate (Hz).
        window_ms / max_gap_ms: jitter buffer window; the longest gap filled with silence.
        pending_s (alias max_pending_s) / max_pending_bytes: bounds of the buffer of RTP waiting for
            its binding.
        idle_s: a stream without packets for this long (capture time) ends.
        close_grace_ms: after a binding closes, RTP up to this much later (capture time) may still
            arrive (topics are consumed independently); the stream ends when the newest capture time
            passes the close plus this grace.
        index: the binding index (a Faust table behind it in the worker).
        nat_fallback: hand RTP that no binding claims by destination back as :class:`Unmatched` (to be
            re-keyed by source and joined with ``on_rtp_batch(rec, by_source=True)``) instead of only
            counting it. A stream joined by source lags by the pending window: it ends (close grace,
            idle) ``pending_s + by_source_grace_ms`` later than a stream joined by destination.
        by_source_grace_ms: the extra lag of RTP joined by source beyond the pending window: pending RTP
            of an idle partition is expired by the worker's 1 s timer, then goes through a topic.
    """

    def __init__(self, *, stt_rate: int = 16000, window_ms: int = 200, max_gap_ms: int = 1000,
                 pending_s: float | None = None, max_pending_s: float = 5.0, max_pending_bytes: int = 8 << 20,
                 idle_s: float = 30.0, close_grace_ms: int = 500, index: BindingIndex | None = None,
                 nat_fallback: bool = False, by_source_grace_ms: int = 2000) -> None:
        if pending_s is not None:
            max_pending_s = pending_s
        self.stt_rate = stt_rate
        self.window_ms = window_ms
        self.max_gap_ms = max_gap_ms
        self.max_pending_us = int(max_pending_s * 1e6)
        self.max_pending_bytes = max_pending_bytes
        self.idle_us = int(idle_s * 1e6)
        self.close_grace_us = close_grace_ms * 1000
        self.nat_fallback = nat_fallback
        self.by_source_lag_us = self.max_pending_us + by_source_grace_ms * 1000
        self.index = index if index is not None else BindingIndex()
        self.streams: dict[str, _Stream] = {}
        self._pending: dict[str, list[_Pending]] = {}
        self._pending_bytes = 0
        self._noted: set[tuple[str, str]] = set()
        self._unmatched_keys: set[str] = set()
        self._touched: set[str] = set()
        self.now_us = 0
        self._index_expired_us = 0
        self._fast_path = True  # the vectorised record path (off: every entry takes the per-stream path)
        self._fast_min = 4  # fewer candidate entries of one shape than this take the per-stream path
        self._fast_refs: dict[str, _FastRef] = {}  # stream key -> (binding, stream) last joined
        self._fast_entries = 0  # entries the vectorised path took (tests check it is exercised)
        self._closing: set[str] = set()  # idents of streams whose binding closed (close_at_us set)
        self._scratch: dict[str, npt.NDArray[np.float64]] = {}  # work arrays of the batched resampler
        self.counters: dict[str, int] = {"packets": 0, "unmatched_packets": 0, "unmatched_streams": 0,
                                         "pending_dropped": 0, "bad_input": 0, "encrypted_packets": 0,
                                         "non_audio_packets": 0, "unknown_codec_packets": 0,
                                         "fallback_packets": 0, "by_source_packets": 0}

    # -- public API ---------------------------------------------------------------------------------
    def knows(self, stream_key: str) -> bool:
        """True if any binding (open or closed) is held for ``stream_key``."""
        return bool(self.index.bindings(stream_key))

    def seed(self, bindings: Iterable[Binding]) -> None:
        """Load bindings into the index with no side effect (a restarted worker, from its table)."""
        for b in bindings:
            self.index.apply(b)

    def on_binding(self, binding: Binding) -> list[MediaOut]:
        """Apply a MediaBinding (open, replace or close). Replays pending RTP; may end a stream.

        A close ends the speaker stream on that key once capture time passes it plus
        ``close_grace_ms``; if no RTP ever came, a StreamEnded with zero statistics is still produced,
        but only when this joiner had seen the binding open (so re-applying old closed bindings after
        a restart ends nothing).
        """
        key = str(binding["stream_key"])
        call_id, speaker = str(binding["call_id"]), str(binding["speaker"])
        was_open = any(b["version"] == binding["version"] for b in self.index.open_for(key, call_id, speaker))
        self.index.apply(binding)
        out: list[MediaOut] = []
        if binding.get("valid_until_us") is None:
            out += self._replay(key)
        else:
            until = int(binding["valid_until_us"])
            if not self.index.open_for(key, call_id, speaker):
                ident = _ident(key, call_id, speaker, False)
                st = self.streams.get(ident)
                if st is None and was_open:  # a binding that never carried RTP still ends (the assembler waits)
                    st = _Stream(binding, self.stt_rate, self.window_ms, self.max_gap_ms)
                    st.last_us = until
                    self.streams[ident] = st
                    self._touched.add(key)
                if st is not None:
                    st.close_at_us = until
                    self._closing.add(ident)
                # RTP joined by source on this key carries the other party's voice (symmetric RTP)
                src_ident = _ident(key, call_id, _OTHER.get(speaker, speaker), True)
                src = self.streams.get(src_ident)
                if src is not None:
                    src.close_at_us = until
                    self._closing.add(src_ident)
            out += self._end_due()
        return out

    def on_rtp_batch(self, rec: dict[str, Any], by_source: bool = False) -> list[MediaOut]:
        """Process one RtpBatch Avro dict (all its stream entries, in order).

        ``by_source``: the entries are :class:`Unmatched` ones re-keyed by their source tuple: they join
        the binding of that tuple (symmetric RTP: a party sends from where it receives), carry the
        OTHER speaker's voice, and are counted as unmatched if that fails too (no second wait).
        """
        out: list[MediaOut] = []
        flush_us = int(rec.get("flush_ts_us") or 0)
        entries = rec.get("streams") or ()
        if not isinstance(entries, list | tuple):
            entries = list(entries)
        fast: dict[int, tuple[int, int, AudioChunk]] = {}
        if self._fast_path and not by_source and len(entries) >= self._fast_min:
            fast = self._fast_record(entries)
        for i, entry in enumerate(entries):
            done = fast.get(i)
            if done is not None:  # joined by the vectorised path: its state is already updated
                self.now_us = max(self.now_us, done[0])
                self.counters["packets"] += done[1]
                out.append(done[2])
                continue
            try:
                cols = _Cols.of(unpack_stream(entry))
            except (ColumnError, KeyError, ValueError, TypeError):
                self.counters["bad_input"] += 1
                continue
            if cols.count == 0:
                continue
            self.now_us = max(self.now_us, int(cols.capture_us.max()))
            self.counters["packets"] += cols.count
            if by_source:
                self.counters["by_source_packets"] += cols.count
            out += self._route(cols, np.arange(cols.count, dtype=np.int64), pend=not by_source, by_source=by_source)
        self.now_us = max(self.now_us, flush_us)
        out += self._end_due()
        out += self._expire_pending(self.now_us)
        return out

    def expire(self, now_us: int) -> list[MediaOut]:
        """Advance capture time: release jitter gaps, end idle and closed streams, drop old pending RTP."""
        self.now_us = max(self.now_us, now_us)
        out: list[MediaOut] = []
        for ident in sorted(self.streams):
            st = self.streams[ident]
            if st.jb is not None and st.jb.held:
                out += self._play(st, st.jb.advance(self.now_us - self._lag(st)))
        out += self._end_due()
        for ident in sorted(self.streams):
            st = self.streams[ident]
            if st.close_at_us is None and self.now_us - self._lag(st) - st.last_us > self.idle_us:
                out += self._end(st, self.now_us, "idle")
        out += self._expire_pending(self.now_us)
        if self.now_us - self._index_expired_us > 60_000_000:  # closed bindings older than an hour go
            self._index_expired_us = self.now_us
            self.index.expire(self.now_us)
        return out

    def flush_all(self, now_us: int | None = None) -> list[MediaOut]:
        """End every stream now (shutdown / end of an offline file)."""
        if now_us is not None:
            self.now_us = max(self.now_us, now_us)
        out: list[MediaOut] = []
        for ident in sorted(self.streams):
            out += self._end(self.streams[ident], self.now_us, "closed")
        out += self._expire_pending(self.now_us + self.max_pending_us + 1)
        return out

    def pop_touched(self) -> set[str]:
        """Stream keys whose state changed since the last call (what a table must save)."""
        t = self._touched
        self._touched = set()
        return t

    def snapshot_stream(self, stream_key: str) -> dict[str, Any]:
        """JSON-able state of every speaker stream on ``stream_key`` (pending RTP is transient, not kept)."""
        return {ident: st.snapshot() for ident, st in sorted(self.streams.items()) if st.stream_key == stream_key}

    def restore_stream(self, stream_key: str, state: dict[str, Any]) -> None:
        self._fast_refs.pop(stream_key, None)
        for ident in [i for i, st in self.streams.items() if st.stream_key == stream_key]:
            del self.streams[ident]
        for ident, s in state.items():
            self.streams[ident] = _Stream.restore(s, self.stt_rate, self.window_ms, self.max_gap_ms)
            if s["close_at_us"] is not None:
                self._closing.add(ident)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state of the whole joiner (streams, notes given, counters, capture time)."""
        return {"streams": {i: st.snapshot() for i, st in sorted(self.streams.items())},
                "noted": sorted([list(n) for n in self._noted]), "counters": dict(self.counters),
                "now_us": self.now_us, "unmatched_keys": sorted(self._unmatched_keys)}

    def restore(self, state: dict[str, Any]) -> None:
        self._fast_refs.clear()
        self.streams = {i: _Stream.restore(s, self.stt_rate, self.window_ms, self.max_gap_ms)
                        for i, s in state["streams"].items()}
        self._closing = {i for i, st in self.streams.items() if st.close_at_us is not None}
        self._noted = {(a, b) for a, b in state["noted"]}
        self.counters.update(state["counters"])
        self.now_us = int(state["now_us"])
        self._unmatched_keys = set(state["unmatched_keys"])

    # -- the vectorised record path ---------------------------------------------------------------
    def _fast_record(self, entries: Any) -> dict[int, tuple[int, int, AudioChunk]]:
        """Join the dominant entries of one record together; returns {entry index: (max capture µs,
        packets, AudioChunk)} for those it took (the caller counts them in entry order).

        An entry qualifies when its stream is known and bound (one binding for the whole entry, no
        other entry of that key in the record), not encrypted, with one PCMU/PCMA payload type, equal
        non-empty payloads, the same SSRC, continuing the sequence in order and contiguous with what
        was played (:func:`~streams.core.jitter.plan_rows`), and no SRTP-looking first pair. Those of
        one shape (packets, payload bytes) are done with array operations over all of them: one table
        decode, one batched resample (:func:`~streams.core.codecs.resample.process_rows`), the jitter
        statistics as rows. The per-stream path gives the same outputs and state, bit for bit
        (tests/unit/streams/test_media_fastpath.py); every other entry takes it.
        """
        counts: dict[Any, int] = {}
        for e in entries:
            k = e.get("stream_key") if isinstance(e, dict) else None
            k = k if isinstance(k, str) else None  # anything else is the per-stream path's to reject
            counts[k] = counts.get(k, 0) + 1
        groups: dict[tuple[int, int], list[tuple[int, dict[str, Any], _FastRef, int, int]]] = {}
        for i, e in enumerate(entries):
            try:
                cand = self._fast_candidate(e, counts)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                cand = None  # malformed: the per-stream path counts it
            if cand is not None:
                ref, pt, shape = cand
                groups.setdefault(shape, []).append((i, e, ref, pt, int(e["base_capture_us"])))
        done: dict[int, tuple[int, int, AudioChunk]] = {}
        for (n, plen), g in groups.items():
            if len(g) >= self._fast_min:
                self._fast_group(n, plen, g, done)
        return done

    def _fast_candidate(self, e: dict[str, Any], counts: dict[Any, int]) -> tuple[_FastRef, int, tuple[int, int]] | None:
        key = e["stream_key"]
        n = e["count"]
        if not isinstance(key, str) or counts.get(key) != 1 or not isinstance(n, int) or n < 1:
            return None
        plen, rest = divmod(len(e["payloads"]), n)
        co = e["capture_offset_us"]
        if (rest or not plen or len(e["seq"]) != 2 * n or len(e["rtp_ts"]) != 4 * n or len(co) != 4 * n
                or len(e["pt_marker"]) != n or len(e["payload_len"]) != 2 * n):
            return None
        base = int(e["base_capture_us"])
        cap0 = base + int.from_bytes(co[0:4], "little")
        cap1 = base + int.from_bytes(co[-4:], "little")
        ref = self._fast_refs.get(key)
        if (ref is None or self.index.store.get(key) is not ref.blist or not ref.lo <= cap0 < ref.hi
                or not ref.lo <= cap1 < ref.hi or self.streams.get(ref.ident) is not ref.st):
            # the cached binding does not provably answer both lookups: ask the index
            b = self.index.lookup(key, cap0)
            if b is None or (n > 1 and self.index.lookup(key, cap1) is not b):
                return None
            if ref is None or ref.b is not b or self.streams.get(ref.ident) is not ref.st:
                ref = self._fast_ref(key, b)
                if ref is None:
                    return None
        st = ref.st
        if st.encrypted or st.jb is None or st.out_pos is None or st.jb.clock_rate != 8000:
            return None
        pt = e["pt_marker"][0] & 0x7F
        if pt not in ref.codecs:
            codec = self._fast_codec(st, ref.pmap.get(pt))
            if codec is None:
                return None
            ref.codecs[pt] = codec
        if self.stt_rate != 8000:
            r = st.resampler
            if r is None:
                if not self._fast_new_resampler_ok:
                    return None
            elif r.src_rate != 8000 or not rows_supported(r):
                return None
        return ref, pt, (n, plen)

    @property
    def _fast_new_resampler_ok(self) -> bool:
        return rows_supported(Resampler(8000, self.stt_rate))

    def _fast_ref(self, key: str, b: Binding) -> _FastRef | None:
        if b["encrypted"]:
            return None
        speaker = str(b["speaker"])
        ident = _ident(str(b["stream_key"]), str(b["call_id"]), speaker, False)
        st = self.streams.get(ident)
        if st is None or self._clock(b) != 8000:
            return None
        # [lo, hi): capture times whose lookup() is provably b while the key's binding list is this one
        # (ordered by valid_from: no later binding starts before hi; b is valid in it)
        blist = self.index.store.get(key)
        lo = hi = 0
        at = next((i for i, x in enumerate(blist) if x is b), None) if blist is not None else None
        if blist is not None and at is not None:
            until = b.get("valid_until_us")
            lo = int(b["valid_from_us"])
            hi = min([int(x["valid_from_us"]) for x in blist[at + 1:]] + [1 << 62 if until is None else int(until)])
        ref = _FastRef(b, ident, st, {int(p["payload_type"]): p for p in b["payload_map"]}, {}, blist, lo, hi)
        self._fast_refs[key] = ref
        return ref

    @staticmethod
    def _fast_codec(st: _Stream, fmt: dict[str, Any] | None) -> tuple[int, str] | None:
        """(table: 0 mu-law / 1 A-law, SDP encoding name) for a G.711 format whose decoder the stream
        already has (the per-stream path creates decoders), else None."""
        if fmt is None:
            return None
        enc = str(fmt["encoding"]).upper()
        if (enc not in ("PCMU", "PCMA") or int(fmt["clock_rate"]) != 8000
                or f"{enc}/8000/{int(fmt.get('channels') or 1)}" not in st.decoders):
            return None
        return (0 if enc == "PCMU" else 1), str(fmt["encoding"])

    def _fast_group(self, n: int, plen: int, g: list[tuple[int, dict[str, Any], _FastRef, int, int]],
                    done: dict[int, tuple[int, int, AudioChunk]]) -> None:
        s = len(g)
        entries = [c[1] for c in g]
        try:
            seq = np.frombuffer(b"".join([e["seq"] for e in entries]), dtype="<u2").reshape(s, n)
            ts = np.frombuffer(b"".join([e["rtp_ts"] for e in entries]), dtype="<u4").reshape(s, n)
            off = np.frombuffer(b"".join([e["capture_offset_us"] for e in entries]), dtype="<u4").reshape(s, n)
            ptm = np.frombuffer(b"".join([e["pt_marker"] for e in entries]), dtype=np.uint8).reshape(s, n)
            lens = np.frombuffer(b"".join([e["payload_len"] for e in entries]), dtype="<u2").reshape(s, n)
            codes_all = b"".join([e["payloads"] for e in entries])
            ssrcs = [int(e["ssrc"]) for e in entries]
        except (TypeError, ValueError):
            return  # not the bytes an RtpStreamBatch holds: the per-stream path counts them as bad input
        cap = off.astype(np.int64) + np.array([c[4] for c in g], dtype=np.int64)[:, None]
        pts = np.array([c[3] for c in g], dtype=np.uint8)
        ok = (lens == plen).all(axis=1) & ((ptm & 0x7F) == pts[:, None]).all(axis=1)
        if n >= 4:  # _looks_like_srtp's first-pair test must call it plain RTP
            pair = ((seq[:, 1].astype(np.int64) - seq[:, 0]) & 0xFFFF) == 1
            excess = plen - ((ts[:, 1].astype(np.int64) - ts[:, 0]) & 0xFFFFFFFF)
            ok &= pair & (excess != _SRTP_TAGS[0]) & (excess != _SRTP_TAGS[1])
        sts = [c[2].st for c in g]
        jbs = [st.jb for st in sts]
        plan = plan_rows(jbs, ssrcs, seq, ts, cap)  # type: ignore[arg-type]
        pos = plan.pos
        out_pos = np.array([st.out_pos for st in sts], dtype=np.int64)
        ok &= plan.ok & (pos[:, 0] == out_pos) & (pos[:, 0] >= 0)
        if n > 1:  # contiguous with the open chunk and within itself (_play's fast case)
            ok &= (pos[:, 1:] == pos[:, :-1] + plen).all(axis=1)
        rows = np.flatnonzero(ok).tolist()
        if not rows:
            return
        codecs = [g[i][2].codecs[g[i][3]] for i in rows]
        codes = np.frombuffer(codes_all, dtype=np.uint8).reshape(s, n * plen)
        if len(rows) < s:
            codes = codes[rows]
        alaw = [c[0] for c in codecs]
        if not any(alaw):
            pcm = ULAW_TABLE[codes]
        elif all(alaw):
            pcm = ALAW_TABLE[codes]
        else:
            pcm = _G711_TABLES[codes.astype(np.intp) + (np.array(alaw, dtype=np.intp) << 8)[:, None]]
        tails = pcm[:, -_TAIL_8K:]
        if self.stt_rate != 8000:
            rs = []
            for i in rows:
                st = sts[i]
                if st.resampler is None:
                    st.resampler = Resampler(8000, self.stt_rate)
                rs.append(st.resampler)
            pcm = process_rows(rs, pcm, self._scratch)
        commit_rows(jbs, plan, rows)  # type: ignore[arg-type]
        self._fast_entries += len(rows)
        last_pos = pos[:, -1].tolist()
        cap_max = plan.cap_max.tolist()
        samples = int(pcm.shape[1])
        for j, i in enumerate(rows):
            idx, _e, ref, _pt, _base = g[i]
            st = ref.st
            st.role = ref.b.get("role")
            if cap_max[i] > st.last_us:
                st.last_us = cap_max[i]
            self._touched.add(st.stream_key)
            st.codec = codecs[j][1]
            start = st.out_pos
            assert start is not None
            st.out_pos = last_pos[i] + plen
            st.tail = tails[j].copy()
            st.audio_samples += samples
            done[idx] = (cap_max[i], n, AudioChunk(st.call_key, st.site, st.call_id, st.speaker, st.role,
                                                    st.stream_key, round(start / 8000, 6), self.stt_rate, pcm[j]))

    # -- routing --------------------------------------------------------------------------------
    def _route(self, cols: _Cols, idx: I64, pend: bool, by_source: bool = False) -> list[MediaOut]:
        """Send the packets ``idx`` of an entry to the streams of their bindings; the rest waits."""
        key = cols.stream_key
        cap = cols.capture_us[idx]
        b_first = self.index.lookup(key, int(cap[0]))
        b_last = self.index.lookup(key, int(cap[-1])) if idx.size > 1 else b_first
        groups: list[tuple[Binding | None, I64]]
        if b_first is b_last:
            groups = [(b_first, idx)]
        else:  # a binding boundary inside the entry: split by packet (rare)
            looked = [self.index.lookup(key, int(c)) for c in cap.tolist()]
            groups = []
            start = 0
            for i in range(1, len(looked) + 1):
                if i == len(looked) or looked[i] is not looked[start]:
                    groups.append((looked[start], idx[start:i]))
                    start = i
        out: list[MediaOut] = []
        for b, sel in groups:
            if b is None:
                if pend:
                    self._add_pending(cols, sel)
                else:
                    self._unmatched(key, int(sel.size))
                continue
            out += self._feed(b, cols, sel, by_source)
        return out

    def _feed(self, b: Binding, cols: _Cols, sel: I64, by_source: bool = False) -> list[MediaOut]:
        speaker = _OTHER.get(str(b["speaker"]), str(b["speaker"])) if by_source else str(b["speaker"])
        role = b.get("role")
        if by_source and role is not None:
            role = _OTHER.get(str(role), role)
        ident = _ident(str(b["stream_key"]), str(b["call_id"]), speaker, by_source)
        st = self.streams.get(ident)
        if st is None:
            st = _Stream({**b, "speaker": speaker, "role": role, "_by_source": by_source}, self.stt_rate,
                         self.window_ms, self.max_gap_ms)
            self.streams[ident] = st
            until = b.get("valid_until_us")
            if until is not None and not self.index.open_for(str(b["stream_key"]), str(b["call_id"]),
                                                             str(b["speaker"])):
                # the binding closed before its RTP was read (a backlog): the stream ends at the close,
                # not only after idle_s
                st.close_at_us = int(until)
                self._closing.add(ident)
        st.role = role
        st.last_us = max(st.last_us, int(cols.capture_us[sel].max()))
        self._touched.add(st.stream_key)
        out: list[MediaOut] = []
        pt = cols.payload_type[sel]
        lens = cols.payload_len[sel].astype(np.int64)
        pmap = {int(p["payload_type"]): p for p in b["payload_map"]}
        if not (b["encrypted"] or st.encrypted) and _looks_like_srtp(cols, sel, pt, lens, pmap):
            st.encrypted = True  # e.g. ZRTP: keys agreed in-band, the SDP still says RTP/AVP
        if b["encrypted"] or st.encrypted:
            self.counters["encrypted_packets"] += int(sel.size)
            st.packets_encrypted += int(sel.size)
            out += self._note(st, f"{st.speaker} RTP stream is encrypted (SRTP/ZRTP): not transcribed")
            audio = np.zeros(sel.size, dtype=bool)
        else:
            audio = np.zeros(sel.size, dtype=bool)
            p0 = int(pt[0])
            for p in ([p0] if bool(np.all(pt == p0)) else np.unique(pt).tolist()):
                fmt = pmap.get(int(p))
                here = pt == p
                if fmt is None:
                    self.counters["unknown_codec_packets"] += int(here.sum())
                    out += self._note(st, f"{st.speaker} RTP payload type {p} was not negotiated: not transcribed")
                    continue
                enc = str(fmt["encoding"]).upper()
                if enc in NON_AUDIO:
                    self.counters["non_audio_packets"] += int(here.sum())
                    continue
                if self._decoder(st, fmt) is None:
                    self.counters["unknown_codec_packets"] += int(here.sum())
                    out += self._note(st, f"{st.speaker} codec {fmt['encoding']}/{fmt['clock_rate']} is not "
                                          f"supported: not transcribed")
                    continue
                audio |= here
        # strip every payload that is not decodable audio BEFORE buffering (DTMF never stored)
        all_off = cols.payload_offsets
        if sel.size == cols.count:  # the whole entry (the common case): no copy
            pay_sel, off_sel = cols.payloads, all_off
        else:
            pay_sel, off_sel = gather_payloads(cols.payloads, all_off, sel)
        if not audio.all():
            pay_sel = np.frombuffer(pay_sel, dtype=np.uint8)[np.repeat(audio, lens)].tobytes()
            new_lens = np.where(audio, lens, 0)
            off_sel = np.zeros(sel.size + 1, dtype=np.int64)
            np.cumsum(new_lens, out=off_sel[1:])
        clock = self._clock(b)
        if st.jb is None or st.jb.clock_rate != clock:
            if st.jb is not None:
                out += self._play(st, st.jb.flush())
            # non-audio payloads were emptied above: the buffer keeps them off the timeline
            st.jb = JitterBuffer(clock, self.window_ms, self.max_gap_ms, st.origin_us)
            st.out_pos = None
        frames = st.jb.add_arrays(cols.ssrc, cols.seq[sel], cols.rtp_ts[sel], cols.capture_us[sel], pt, off_sel,
                                  pay_sel)
        out += self._play(st, frames, pmap)
        return out

    def _clock(self, b: Binding) -> int:
        for p in b["payload_map"]:
            enc = str(p["encoding"]).upper()
            if enc not in NON_AUDIO and decoder_for(enc, int(p["clock_rate"]), int(p.get("channels") or 1)):
                return int(p["clock_rate"])
        return 8000

    def _decoder(self, st: _Stream, fmt: dict[str, Any]) -> Decoder | None:
        k = f"{str(fmt['encoding']).upper()}/{int(fmt['clock_rate'])}/{int(fmt.get('channels') or 1)}"
        d = st.decoders.get(k)
        if d is None:
            d = decoder_for(str(fmt["encoding"]), int(fmt["clock_rate"]), int(fmt.get("channels") or 1))
            if d is None:
                return None
            st.decoders[k] = d
        return d

    # -- playout: decode, place on the timeline, resample -----------------------------------------
    def _play(self, st: _Stream, fr: Frames, pmap: dict[int, dict[str, Any]] | None = None) -> list[MediaOut]:
        if fr.count == 0:
            return []
        if pmap is None:
            b = self._binding_of(st)
            pmap = {int(p["payload_type"]): p for p in b["payload_map"]} if b else {}
        sel = np.flatnonzero(fr.pos_ticks >= 0)
        if sel.size == 0 or st.jb is None:
            if sel.size == 0:  # only removed packets (events, CN): what follows them is not concealed
                st.tail = None
            return []
        clock = st.jb.clock_rate
        pos = fr.pos_ticks[sel]
        pts = fr.payload_type[sel]
        offs = fr.offsets
        lens = (offs[1:] - offs[:-1])[sel]
        resets = fr.reset[sel]
        # packets taken off the timeline (RFC 4733 events, CN) right before a kept one: the gap they leave
        # is silence, not a loss to conceal
        removed_before = np.zeros(sel.size, dtype=bool)
        removed_before[0] = int(sel[0]) > 0
        removed_before[1:] = (sel[1:] - sel[:-1]) > 1
        max_gap = self.max_gap_ms * clock // 1000
        out: list[MediaOut] = []
        # segments of (decoder, first, last) with the same payload type
        cuts = np.flatnonzero(pts[1:] != pts[:-1]) + 1
        bounds = [0, *cuts.tolist(), int(sel.size)]
        chunk: list[npt.NDArray[np.int16]] = []
        chunk_start: int | None = None
        # decoded audio not yet resampled: resampled once per run of one rate (the resampler is exact
        # in blocks: one call on the join equals one call per packet), not once per packet
        raw: list[tuple[Decoder, npt.NDArray[np.int16]]] = []
        for a, z in zip(bounds[:-1], bounds[1:], strict=True):
            fmt = pmap.get(int(pts[a]))
            dec = self._decoder(st, fmt) if fmt is not None else None
            if dec is None:
                st.tail = None  # a removed event/CN: its time stays silence, never concealed with speech
                continue
            st.codec = str(fmt["encoding"]) if fmt is not None else st.codec
            dur = dec.ticks_for_bytes(lens[a:z])
            p = pos[a:z]
            r = resets[a:z]
            # fast path: contiguous with the open chunk and within itself
            contiguous = (st.out_pos is not None and int(p[0]) == st.out_pos and not r.any()
                          and bool(np.all(p[1:] == p[:-1] + dur[:-1])))
            if contiguous:
                s_idx = sel[a:z]
                if s_idx.size == fr.count:
                    payload = fr.payloads
                else:
                    payload, _ = gather_payloads(fr.payloads, offs, s_idx)
                if chunk_start is None:
                    chunk_start = st.out_pos
                pcm_run = dec.decode_many(payload, lens[a:z])
                raw.append((dec, pcm_run))
                _keep_tail(st, pcm_run, dec.sample_rate)
                st.out_pos = int(p[-1] + dur[-1])
                continue
            for j in range(a, z):
                if (j == a + 1 and z - j > 1 and st.out_pos is not None and int(pos[j]) == st.out_pos
                        and not r[1:].any() and bool(np.all(p[2:] == p[1:-1] + dur[1:-1]))):
                    # the first packet opened the chunk (start, gap) and the rest continues it: decode the
                    # rest at once (the contiguous case above, same samples and positions)
                    payload, _ = gather_payloads(fr.payloads, offs, sel[j:z])
                    pcm_run = dec.decode_many(payload, lens[j:z])
                    raw.append((dec, pcm_run))
                    _keep_tail(st, pcm_run, dec.sample_rate)
                    st.out_pos = int(p[-1] + dur[-1])
                    break
                pj, dj = int(pos[j]), int(dur[j - a])
                payload = fr.payloads[int(offs[sel[j]]):int(offs[sel[j] + 1])]
                gap = None if st.out_pos is None else pj - st.out_pos
                if gap is None or bool(resets[j]) or gap > max_gap:
                    self._flush_raw(st, raw, chunk)
                    if chunk and chunk_start is not None:
                        out.append(self._chunk(st, chunk_start, clock, chunk))
                    chunk = []
                    chunk_start = pj
                    st.resampler = None  # a new chunk: no filter history across the break
                    st.tail = None  # nor concealment from audio before it
                    st.out_pos = pj
                    gap = 0
                if chunk_start is None:
                    chunk_start = st.out_pos
                pcm = dec.decode(payload)
                if removed_before[j]:
                    st.tail = None
                if gap > 0:  # loss or a removed event/CN: the right length, short losses concealed
                    raw.append((dec, conceal(st.tail, dec.samples_for_ticks(gap), dec.sample_rate)))
                elif gap < 0:  # overlap (a repeated/late timestamp): drop what is already played
                    skip = dec.samples_for_ticks(-gap)
                    pcm = pcm[skip:]
                    dj = max(0, dj + gap)
                    pj = st.out_pos if st.out_pos is not None else pj
                if pcm.size:
                    raw.append((dec, pcm))
                    _keep_tail(st, pcm, dec.sample_rate)
                st.out_pos = max(int(st.out_pos or 0), pj + dj) if gap >= 0 else int(st.out_pos or 0) + dj
        self._flush_raw(st, raw, chunk)
        if chunk and chunk_start is not None:
            out.append(self._chunk(st, chunk_start, clock, chunk))
        if int(sel[-1]) < fr.count - 1:  # the batch ends with removed packets
            st.tail = None
        return out

    def _flush_raw(self, st: _Stream, raw: list[tuple[Decoder, npt.NDArray[np.int16]]],
                   chunk: list[npt.NDArray[np.int16]]) -> None:
        """Resample the decoded pieces in ``raw`` (one call per run of one sample rate) onto ``chunk``."""
        i = 0
        while i < len(raw):
            dec = raw[i][0]
            j = i + 1
            while j < len(raw) and raw[j][0].sample_rate == dec.sample_rate:
                j += 1
            pcm = raw[i][1] if j == i + 1 else np.concatenate([p for _, p in raw[i:j]])
            chunk.append(self._to_stt(st, dec, pcm))
            i = j
        raw.clear()

    def _to_stt(self, st: _Stream, dec: Decoder, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if dec.sample_rate == self.stt_rate:
            return pcm
        if st.resampler is None or st.resampler.src_rate != dec.sample_rate:
            st.resampler = Resampler(dec.sample_rate, self.stt_rate)
        return st.resampler.process(pcm)

    def _chunk(self, st: _Stream, start_ticks: int, clock: int, parts: list[npt.NDArray[np.int16]]) -> AudioChunk:
        pcm = np.concatenate(parts) if len(parts) > 1 else parts[0]
        st.audio_samples += int(pcm.shape[0])
        return AudioChunk(st.call_key, st.site, st.call_id, st.speaker, st.role, st.stream_key,
                          round(start_ticks / clock, 6), self.stt_rate, pcm)

    # -- ends, notes, pending ---------------------------------------------------------------------
    def _binding_of(self, st: _Stream) -> Binding | None:
        want = _OTHER.get(st.speaker, st.speaker) if st.by_source else st.speaker
        for b in reversed(self.index.bindings(st.stream_key)):
            if b["call_id"] == st.call_id and b["speaker"] == want:
                return b
        return None

    def _end_due(self) -> list[MediaOut]:
        out: list[MediaOut] = []
        if not self._closing:
            return out
        for ident in sorted(self._closing):  # only streams whose binding closed: not O(streams) per record
            st = self.streams.get(ident)
            if st is None or st.close_at_us is None:
                self._closing.discard(ident)
            elif self.now_us >= st.close_at_us + self.close_grace_us + self._lag(st):
                out += self._end(st, st.close_at_us, "closed")
        return out

    def _lag(self, st: _Stream) -> int:
        """How far a stream's RTP lags this joiner's clock: RTP joined by source was re-sent only after
        the pending window of its destination's partition (and the timer and a topic), so its close
        grace and idle time (and jitter release) count from ``now - by_source_lag_us``; else the tail of every NAT call (its last
        ``pending_s``) would arrive after the stream ended and start a new stream per record."""
        return self.by_source_lag_us if st.by_source else 0

    def _end(self, st: _Stream, ts_us: int, reason: str) -> list[MediaOut]:
        out: list[MediaOut] = []
        if st.jb is not None:
            out += self._play(st, st.jb.flush())
        stats = st.jb.stats if st.jb is not None else None
        b = self._binding_of(st)
        codec = st.codec or (str(b["payload_map"][0]["encoding"]) if b and b["payload_map"] else "")
        out.append(StreamEnded(st.call_key, st.site, st.call_id, st.speaker, st.stream_key, ts_us, reason, {
            "speaker": st.speaker, "stream_key": st.stream_key, "ssrc": stats.ssrc if stats else 0,
            "codec": codec, "packets": (stats.packets if stats else 0),
            "lost": stats.lost if stats else 0, "duplicates": stats.duplicates if stats else 0,
            "jitter_ms": float(stats.jitter_ms) if stats else 0.0,
            "audio_s": round(st.audio_samples / self.stt_rate, 3),
        }))
        del self.streams[st.ident]
        self._closing.discard(st.ident)
        ref = self._fast_refs.get(st.stream_key)
        if ref is not None and ref.st is st:
            del self._fast_refs[st.stream_key]
        self._touched.add(st.stream_key)
        if not any(o.call_key == st.call_key for o in self.streams.values()):
            self._noted = {n for n in self._noted if n[0] != st.call_key}  # bounded: per live call only
        log.debug("stream ended", extra={"call_id": st.call_id, "speaker": st.speaker, "reason": reason})
        return out

    def _note(self, st: _Stream, text: str) -> list[MediaOut]:
        k = (st.call_key, text)
        if k in self._noted:
            return []
        self._noted.add(k)
        return [Note(st.call_key, st.site, st.call_id, self.now_us, text)]

    def _add_pending(self, cols: _Cols, sel: I64) -> None:
        nbytes = int(cols.payload_len[sel].sum()) + 16 * int(sel.size)
        lst = self._pending.setdefault(cols.stream_key, [])
        lst.append(_Pending(int(cols.capture_us[sel[0]]), int(cols.capture_us[sel[-1]]), nbytes, cols, sel))
        self._pending_bytes += nbytes
        while self._pending_bytes > self.max_pending_bytes:
            oldest_key = min(self._pending, key=lambda k: self._pending[k][0].first_us)
            p = self._pending[oldest_key].pop(0)
            self._pending_bytes -= p.nbytes
            self.counters["pending_dropped"] += int(p.idx.size)
            self._unmatched(oldest_key, int(p.idx.size))
            if not self._pending[oldest_key]:
                del self._pending[oldest_key]

    def _replay(self, key: str) -> list[MediaOut]:
        items = self._pending.pop(key, [])
        out: list[MediaOut] = []
        for p in items:
            self._pending_bytes -= p.nbytes
            out += self._route(p.cols, p.idx, pend=True)  # still unmatched packets wait again
        return out

    def _expire_pending(self, now_us: int) -> list[MediaOut]:
        out: list[MediaOut] = []
        for key in sorted(self._pending):
            lst = self._pending[key]
            keep = []
            for p in lst:
                if now_us - p.last_us > self.max_pending_us:
                    self._pending_bytes -= p.nbytes
                    if self.nat_fallback:
                        self.counters["fallback_packets"] += int(p.idx.size)
                        src_key, entry = p.cols.source_entry(p.idx)
                        out.append(Unmatched(src_key, entry))
                    else:
                        self._unmatched(key, int(p.idx.size))
                else:
                    keep.append(p)
            if keep:
                self._pending[key] = keep
            else:
                del self._pending[key]
        return out

    def _unmatched(self, key: str, n: int) -> None:
        self.counters["unmatched_packets"] += n
        if key not in self._unmatched_keys:
            self._unmatched_keys.add(key)
            self.counters["unmatched_streams"] += 1
            if len(self._unmatched_keys) > 100_000:  # bounded: only a counter of distinct keys
                self._unmatched_keys.clear()

    @property
    def pending_packets(self) -> int:
        return sum(int(p.idx.size) for lst in self._pending.values() for p in lst)


_BYTE_PER_TICK = frozenset({"PCMU", "PCMA", "G722"})
_SRTP_TAGS = (4, 10)  # HMAC-SHA1-32 / -80 authentication tags (RFC 3711 §4.2, RFC 4568)


def _looks_like_srtp(cols: _Cols, sel: I64, pt: npt.NDArray[np.uint8], lens: I64,
                     pmap: dict[int, dict[str, Any]]) -> bool:
    """SRTP whose keys were never in the SDP (ZRTP, RFC 6189): for a codec with one byte per RTP tick,
    each payload is longer than its timestamp step by exactly an authentication tag.

    Needs one payload type in the entry, at least 3 consecutive packet pairs and 3 in 4 of them tagged.
    """
    if sel.size < 4:
        return False
    i0, i1 = int(sel[0]), int(sel[1])
    if (int(cols.seq[i1]) - int(cols.seq[i0])) & 0xFFFF == 1 and int(lens[0]) - (
            (int(cols.rtp_ts[i1]) - int(cols.rtp_ts[i0])) & 0xFFFFFFFF) not in _SRTP_TAGS:
        return False  # cheap scalar test on the first pair: plain RTP (the common case)
    p0 = int(pt[0])
    if str(pmap.get(p0, {}).get("encoding", "")).upper() not in _BYTE_PER_TICK or not bool(np.all(pt == p0)):
        return False
    seq = cols.seq[sel]
    ts = cols.rtp_ts[sel]
    pair = np.diff(seq) == 1  # uint16 arithmetic wraps like the sequence numbers
    npair = int(np.count_nonzero(pair))
    if npair < 3:
        return False
    excess = lens[:-1] - np.diff(ts).astype(np.int64)  # uint32 diff wraps like the timestamps
    tagged = pair & ((excess == _SRTP_TAGS[0]) | (excess == _SRTP_TAGS[1]))
    return int(np.count_nonzero(tagged)) * 4 >= npair * 3


def iter_call_events(outs: Iterable[MediaOut]) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, CallEvent dict) for the StreamEnded and Note outputs, in order."""
    res: list[tuple[bytes, dict[str, Any]]] = []
    for o in outs:
        if isinstance(o, StreamEnded | Note):
            res.append((o.call_key.encode("utf-8"), o.to_call_event()))
    return res
