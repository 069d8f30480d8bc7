"""Test calls for the worker integration tests, written straight as ``SipMessage`` / ``RtpBatch`` records.

A call is a plain SIP dialog (INVITE with SDP, 100, 180, 200 with SDP, ACK, optional re-INVITE moving
the caller's receive port, BYE, 200) and G.711 PCMU RTP in both directions, 20 ms packets. Each speaker's
channel is digital silence with *tone bursts* at the turns: with the reference STT server's ``echo``
engine every burst becomes exactly one final segment (one word, starting at the first loud sample), so a
transcript is deterministic and each turn can be checked by its start time. Gaps of >= 1.5 s of silence
between a speaker's bursts are well above the server's 0.7 s endpointer.

RTP is batched like the edge does it (``ARCHITECTURE.md``, "RTP records"): every 100 ms of capture time,
one ``RtpBatch`` per partition of the rtp topic holding every stream that partition owns, keyed
``site/edge/partition`` and sent to that partition explicitly (murmur2 of the stream key
``site/dst-ip/dst-port``, the receiving endpoint).

Capture times are real ones (now, from the wall clock at generation), advancing from call to call, so
one worker can serve a whole test module without a later call looking "old" to its capture-time clock.
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from schemas.rtp_columns import pack_stream
from spanscribe.partitioning import partition_for

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))
from make_example import mulaw_encode  # noqa: E402 - the example capture's own G.711 encoder

RATE = 8000
PTIME_US = 20_000
SPP = 160  # samples per packet
FLUSH_US = 100_000
TONE_HZ = {"caller": 440.0, "callee": 660.0}
_clock_us = 0
_edge_seq = itertools.count()


def next_start_us(gap_s: float = 1.0) -> int:
    """A call start (capture time, µs) after the end of every call made so far, not before the wall clock."""
    return max(int(time.time() * 1e6), _clock_us + int(gap_s * 1e6))


def _ended(us: int) -> None:
    global _clock_us
    _clock_us = max(_clock_us, us)




@dataclass(frozen=True)
class Turn:
    speaker: str  # "caller" | "callee"
    start_s: float  # seconds after the media start
    dur_s: float


@dataclass
class Call:
    """One call. Times in seconds are relative to the media start (just after the ACK)."""

    call_id: str
    site: str = "it"
    caller_ip: str = "10.9.0.10"
    caller_port: int = 40000
    callee_ip: str = "10.9.0.20"
    callee_port: int = 50000
    turns: list[Turn] = field(default_factory=list)
    media_s: float = 12.0
    reinvite_at_s: float | None = None  # the caller re-INVITEs, moving its receive port ...
    reinvite_port: int = 40100  # ... to this one
    start_us: int = 0  # INVITE capture time
    # the callee behind NAT: its SDP announces callee_ip:callee_port (private), the caller's RTP goes to
    # this public tuple instead, and the callee's RTP comes FROM it (symmetric RTP)
    callee_public: tuple[str, int] | None = None
    ssrc: dict[str, int] = field(default_factory=lambda: {"caller": 0x11110000, "callee": 0x22220000})

    def __post_init__(self) -> None:
        if not self.start_us:
            self.start_us = next_start_us()
        _ended(self.bye_us + 20_000)

    # -- derived times (µs, capture time) ---------------------------------------------------------
    @property
    def ok_us(self) -> int:
        return self.start_us + 300_000

    @property
    def media0_us(self) -> int:
        return self.ok_us + 20_000

    @property
    def n_packets(self) -> int:
        return int(round(self.media_s * 1e6 / PTIME_US))

    @property
    def bye_us(self) -> int:
        return self.media0_us + self.n_packets * PTIME_US + 40_000

    @property
    def reinvite_us(self) -> int | None:
        return None if self.reinvite_at_s is None else self.media0_us + int(self.reinvite_at_s * 1e6)

    @property
    def key(self) -> str:
        return f"{self.site}/{self.call_id}"

    def turn_call_times(self, speaker: str) -> list[float]:
        """Where each of a speaker's turns starts, in seconds of call time (from the INVITE)."""
        off = (self.media0_us - self.start_us) / 1e6
        return [round(off + t.start_s, 3) for t in self.turns if t.speaker == speaker]

    def stream_key(self, speaker: str, after_reinvite: bool = False) -> str:
        """Stream key of the RTP carrying ``speaker``'s voice (keyed by its destination)."""
        if speaker == "caller":
            ip, cport = self.callee_public or (self.callee_ip, self.callee_port)
            return f"{self.site}/{ip}/{cport}"
        port = self.reinvite_port if after_reinvite else self.caller_port
        return f"{self.site}/{self.caller_ip}/{port}"

    # -- audio --------------------------------------------------------------------------------------
    def channel(self, speaker: str) -> np.ndarray:
        n = self.n_packets * SPP
        pcm = np.zeros(n, dtype=np.int16)
        for t in self.turns:
            if t.speaker != speaker:
                continue
            a = int(t.start_s * RATE)
            b = min(n, a + int(t.dur_s * RATE))
            k = np.arange(b - a)
            pcm[a:b] = (8000 * np.sin(2 * np.pi * TONE_HZ[speaker] * k / RATE)).astype(np.int16)
        return pcm

    # -- SIP ----------------------------------------------------------------------------------------
    def _sdp(self, user: str, ip: str, port: int, version: int) -> bytes:
        lines = ["v=0", f"o={user} 1000 {1000 + version} IN IP4 {ip}", "s=it", f"c=IN IP4 {ip}", "t=0 0",
                 f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
                 "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]
        return ("\r\n".join(lines) + "\r\n").encode()

    def sip(self) -> list[tuple[int, dict[str, Any]]]:
        """(capture µs, SipMessage dict) in capture order."""
        a, b = self.caller_ip, self.callee_ip
        ftag, ttag = f"f-{self.call_id[:12]}", f"t-{self.call_id[:12]}"
        from_h = f"<sip:alice@{a}>;tag={ftag}"
        to_plain = f"<sip:bob@{b}>"
        to_full = f"{to_plain};tag={ttag}"

        def req(method: str, cseq: int, branch: str, to: str, body: bytes = b"") -> tuple[bytes, dict[str, Any]]:
            hs = [("Via", f"SIP/2.0/UDP {a}:5060;branch=z9hG4bK{branch}"), ("Max-Forwards", "70"),
                  ("From", from_h), ("To", to), ("Call-ID", self.call_id), ("CSeq", f"{cseq} {method}"),
                  ("Contact", f"<sip:alice@{a}:5060>")]
            raw = _msg(f"{method} sip:bob@{b}:5060 SIP/2.0", hs, body)
            return raw, {"is_request": True, "method": method, "status_code": None, "cseq_num": cseq,
                         "cseq_method": method, "src_ip": a, "dst_ip": b, "from_tag": ftag,
                         "to_tag": ttag if "tag=" in to else None}

        def resp(code: str, cseq: int, method: str, branch: str, to: str, body: bytes = b""
                 ) -> tuple[bytes, dict[str, Any]]:
            src, dst = b, a
            hs = [("Via", f"SIP/2.0/UDP {dst}:5060;branch=z9hG4bK{branch}"), ("From", from_h), ("To", to),
                  ("Call-ID", self.call_id), ("CSeq", f"{cseq} {method}"), ("Contact", f"<sip:bob@{b}:5060>")]
            return _msg(f"SIP/2.0 {code}", hs, body), {
                "is_request": False, "method": None, "status_code": int(code.split()[0]), "cseq_num": cseq,
                "cseq_method": method, "src_ip": src, "dst_ip": dst, "from_tag": ftag,
                "to_tag": ttag if "tag=" in to else None}

        t0 = self.start_us
        caller_sdp = self._sdp("alice", a, self.caller_port, 0)
        callee_sdp = self._sdp("bob", b, self.callee_port, 0)
        msgs: list[tuple[int, tuple[bytes, dict[str, Any]]]] = [
            (t0, req("INVITE", 1, "inv", to_plain, caller_sdp)),
            (t0 + 10_000, resp("100 Trying", 1, "INVITE", "inv", to_plain)),
            (t0 + 40_000, resp("180 Ringing", 1, "INVITE", "inv", to_full)),
            (self.ok_us, resp("200 OK", 1, "INVITE", "inv", to_full, callee_sdp)),
            (self.ok_us + 9_000, req("ACK", 1, "ack", to_full)),
        ]
        if self.reinvite_us is not None:
            r = self.reinvite_us
            new_sdp = self._sdp("alice", a, self.reinvite_port, 1)
            msgs += [(r, req("INVITE", 2, "reinv", to_full, new_sdp)),
                     (r + 10_000, resp("200 OK", 2, "INVITE", "reinv", to_full, self._sdp("bob", b, self.callee_port, 1))),
                     (r + 15_000, req("ACK", 2, "reack", to_full))]
        msgs += [(self.bye_us, req("BYE", 3, "bye", to_full)),
                 (self.bye_us + 11_000, resp("200 OK", 3, "BYE", "bye", to_full))]
        out = []
        for ts, (raw, f) in msgs:
            out.append((ts, {"site": self.site, "edge_id": "it-edge", "edge_seq": next(_edge_seq),
                             "edge_start_us": 0, "capture_ts_us": ts, "transport": "udp",
                             "src_port": 5060, "dst_port": 5060, "raw": raw, "call_id": self.call_id,
                             "sdp_media": [], **f}))
        return out

    # -- RTP ----------------------------------------------------------------------------------------
    def packets(self) -> list[tuple[int, str, str, int, str, int, int, int, int, bytes]]:
        """Every RTP packet: (capture µs, stream_key, src_ip, src_port, dst_ip, dst_port, ssrc, seq, ts, payload)."""
        out = []
        # the callee sends to the new port from the re-INVITE on (the old binding is valid until the
        # offer's capture time: RTP still in flight to the old port after it would be unmatched)
        switch_us = self.reinvite_us
        for speaker in ("caller", "callee"):
            codes = mulaw_encode(self.channel(speaker)).tobytes()
            off = 0 if speaker == "caller" else 7_000
            for n in range(self.n_packets):
                t = self.media0_us + off + n * PTIME_US
                pub_ip, pub_port = self.callee_public or (self.callee_ip, self.callee_port)
                if speaker == "caller":
                    src, sport, dst, dport = self.caller_ip, self.caller_port, pub_ip, pub_port
                else:
                    moved = switch_us is not None and t >= switch_us
                    src, sport = pub_ip, pub_port
                    dst, dport = self.caller_ip, (self.reinvite_port if moved else self.caller_port)
                out.append((t, f"{self.site}/{dst}/{dport}", src, sport, dst, dport, self.ssrc[speaker],
                            (1000 + 7 * len(speaker) + n) & 0xFFFF, (160_000 + n * SPP) & 0xFFFFFFFF,
                            codes[n * SPP:(n + 1) * SPP]))
        out.sort(key=lambda p: p[0])
        return out

    def packet_counts(self) -> dict[str, int]:
        """Packets per stream key."""
        c: dict[str, int] = {}
        for p in self.packets():
            c[p[1]] = c.get(p[1], 0) + 1
        return c


def _msg(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    hs = list(headers)
    if body:
        hs.append(("Content-Type", "application/sdp"))
    hs.append(("Content-Length", str(len(body))))
    return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n").encode() + body


def rtp_batches(packets: list[tuple[Any, ...]], partitions: int, site: str = "it", edge: str = "it-edge"
                ) -> list[tuple[int, int, bytes, dict[str, Any]]]:
    """Group packets like the edge: per 100 ms flush and per partition -> (flush µs, partition, key, RtpBatch)."""
    out: list[tuple[int, int, bytes, dict[str, Any]]] = []
    if not packets:
        return out
    seqs: dict[int, int] = {}
    flush = (packets[0][0] // FLUSH_US + 1) * FLUSH_US
    cur: dict[int, dict[tuple[Any, ...], list[tuple[Any, ...]]]] = {}

    def emit(at: int) -> None:
        for part in sorted(cur):
            entries = []
            for (skey, src, sport, dst, dport, ssrc), pk in cur[part].items():
                entries.append(pack_stream(
                    stream_key=skey, src_ip=src, src_port=sport, dst_ip=dst, dst_port=dport, ssrc=ssrc,
                    seq=[p[7] for p in pk], rtp_ts=[p[8] for p in pk], capture_us=[p[0] for p in pk],
                    payload_type=[0] * len(pk), marker=[False] * len(pk), payloads=[p[9] for p in pk]))
            entries.sort(key=lambda e: (e["base_capture_us"], e["stream_key"]))
            bseq = seqs.get(part, 0)
            seqs[part] = bseq + 1
            out.append((at, part, f"{site}/{edge}/{part}".encode(),
                        {"site": site, "edge_id": edge, "edge_start_us": 0, "batch_seq": bseq,
                         "flush_ts_us": at, "streams": entries}))
        cur.clear()

    for p in packets:
        while p[0] >= flush:
            emit(flush)
            flush += FLUSH_US
        part = partition_for(p[1].encode(), partitions)
        cur.setdefault(part, {}).setdefault((p[1], p[2], p[3], p[4], p[5], p[6]), []).append(p)
    emit(flush)
    return out


def standard_turns() -> list[Turn]:
    """Alternating turns, two per speaker, 1 s tones, >= 3 s apart per speaker."""
    return [Turn("callee", 0.5, 1.0), Turn("caller", 2.5, 1.0), Turn("callee", 4.5, 1.0), Turn("caller", 6.5, 1.0)]
