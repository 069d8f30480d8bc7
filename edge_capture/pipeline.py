"""The edge's one code path after the source: frames in, SipMessage and RtpBatch records out.

:class:`EdgePipeline` is sans-I/O apart from the :class:`Sink` it is given (a Kafka producer or a
dry-run collector): capture time comes from the frames, never from a clock, so replaying a file gives
the same records every time. Per frame it decodes link/IP/transport layers (:mod:`.decode`), reassembles
SIP over TCP (:mod:`.tcp`), parses SIP and SDP with :mod:`spanscribe.protocols`, learns the media
endpoints every SDP announces, and batches RTP sent to (or, for symmetric RTP behind NAT, from) those
endpoints per stream; every ``flush_ms`` of capture time it sends ONE ``RtpBatch`` per partition of the
rtp topic (ARCHITECTURE.md, "RTP records").

Counters are plain ints on the pipeline (a Prometheus ``inc()`` per packet would cost more than the
decode); :mod:`.app` copies them to Prometheus periodically.
"""
from __future__ import annotations

import logging
import socket
import struct
import sys
from array import array
from collections import Counter as TallyCounter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from spanscribe.partitioning import partition_for
from spanscribe.protocols import rtp as rtp_proto
from spanscribe.protocols import sdp as sdp_proto
from spanscribe.protocols import sip as sip_proto
from spanscribe.protocols.errors import MalformedInput

from .decode import TCP_SYN, Buffer, FragmentReassembler, FrameDecoder
from .fastpath import BlockPath
from .tcp import TcpReassembler

log = logging.getLogger(__name__)

_RTP_FIXED = struct.Struct("!HII")
# Ethernet type, IPv4 ver/IHL, total length, flags/fragment, protocol, src, dst, UDP ports and length,
# RTP first bytes, sequence, timestamp, SSRC: every header of the dominant frame in one unpack.
_FAST_RTP = struct.Struct("!12xHBxH2xH1xB2x4s4sHHH2xBBHII")  # sequence, timestamp, SSRC after the first two bytes
_SIP_FIRST = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r\n")
_SWEEP_US = 1_000_000


class Sink(Protocol):
    """Where records go. ``rtp_partitions`` is the partition count of the rtp topic."""

    rtp_partitions: int

    def send_sip(self, key: bytes, record: dict[str, Any]) -> None: ...

    def send_rtp(self, partition: int, key: bytes, record: dict[str, Any]) -> None: ...


@dataclass
class EdgeConfig:
    """Settings of one pipeline (see ``spanscribe edge --help`` for the meaning of each)."""

    site: str
    edge_id: str
    sip_ports: frozenset[int] = frozenset({5060})
    rtp_mode: str = "sdp"
    rtp_ports: tuple[int, int] = (1024, 65535)
    rtp_grace_us: int = 30_000_000
    rtp_idle_us: int = 300_000_000  # an endpoint with no packet for this long (and no new SDP) is closed
    flush_us: int = 100_000
    max_batch_packets: int = 10000
    keep_stream_stats: bool = True
    max_stream_stats: int = 200_000


_LE = sys.byteorder == "little"


def _col(a: array[int]) -> bytes:
    """Little-endian bytes of an array column (the wire format of RtpStreamBatch columns)."""
    if not _LE:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


class _Stream:
    """Pending packets of one RTP stream (5-tuple + SSRC) as growing columns, plus running statistics.

    Columns are ``array`` objects in the exact dtypes of ``schemas.rtp_columns`` (uint16 seq, uint32
    timestamp, uint32 capture offset from ``base``, uint8 PT|marker, uint16 payload length), so a
    flush is a handful of ``tobytes()`` calls instead of numpy conversions per stream
    (:func:`pack_entry` equals :func:`schemas.rtp_columns.pack_stream` byte for byte; a test checks).
    """

    __slots__ = ("key", "stream_key", "partition", "src_ip", "src_port", "dst_ip", "dst_port", "ssrc",
                 "seq", "ts", "off", "ptm", "plen", "pl", "base", "last", "packets", "payload_type",
                 "first_ext", "max_ext", "last_ext")

    def __init__(self, key: tuple[bytes, int, bytes, int, int], stream_key: str, partition: int,
                 src_ip: str, dst_ip: str) -> None:
        self.key = key
        self.stream_key = stream_key
        self.partition = partition
        self.src_ip = src_ip
        self.src_port = key[1]
        self.dst_ip = dst_ip
        self.dst_port = key[3]
        self.ssrc = key[4]
        self.packets = 0
        self.payload_type = -1
        self.first_ext = -1
        self.max_ext = -1
        self.last_ext = -1
        self.last = 0
        self.base = 0
        self._reset()

    def _reset(self) -> None:
        self.seq = array("H")
        self.ts = array("I")
        self.off = array("I")
        self.ptm = bytearray()
        self.plen = array("H")
        self.pl: list[Buffer] = []


def pack_entry(s: _Stream) -> dict[str, Any]:
    """The RtpStreamBatch dict of a stream's pending packets (same bytes as ``pack_stream``)."""
    return {
        "stream_key": s.stream_key, "src_ip": s.src_ip, "src_port": s.src_port, "dst_ip": s.dst_ip,
        "dst_port": s.dst_port, "ssrc": s.ssrc, "count": len(s.seq), "base_capture_us": s.base,
        "seq": _col(s.seq), "rtp_ts": _col(s.ts), "capture_offset_us": _col(s.off),
        "pt_marker": bytes(s.ptm), "payload_len": _col(s.plen), "payloads": b"".join(s.pl),
    }


@dataclass
class Stats:
    """What the pipeline saw (the dry-run summary and the metrics are made from this)."""

    frames: int = 0
    bytes: int = 0
    udp: int = 0
    tcp: int = 0
    sip_messages: int = 0
    sip_udp: int = 0
    sip_tcp: int = 0
    sip_methods: TallyCounter[str] = field(default_factory=TallyCounter)
    sip_responses: TallyCounter[str] = field(default_factory=TallyCounter)
    rtp_packets: int = 0
    rtcp_packets: int = 0
    non_rtp_media: int = 0  # STUN/ZRTP/DTLS etc. on a media port
    ignored_udp: int = 0
    rtp_batches: int = 0
    rtp_streams_flushed: int = 0
    errors: TallyCounter[tuple[str, str]] = field(default_factory=TallyCounter)
    endpoints_learned: int = 0
    endpoints_closed: int = 0


def _entry_order(e: dict[str, Any]) -> tuple[bytes, int, bytes, int, int]:
    """Order of the streams inside an RtpBatch: destination, then source, then SSRC (packed bytes)."""
    return (ip_packed(e["dst_ip"]) or b"", e["dst_port"], ip_packed(e["src_ip"]) or b"", e["src_port"], e["ssrc"])


def ip_text(ip: bytes) -> str:
    """Text form of a packed IPv4/IPv6 address."""
    return socket.inet_ntop(socket.AF_INET if len(ip) == 4 else socket.AF_INET6, ip)


def ip_packed(text: str) -> bytes | None:
    """Packed form of an IP address in text, or None if it is not one (e.g. a host name in c=)."""
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(fam, text.strip())
        except (OSError, ValueError):
            continue
    return None


class EdgePipeline:
    """Frames in (``process``), records out to the sink. See module doc."""

    def __init__(self, cfg: EdgeConfig, sink: Sink) -> None:
        self.cfg = cfg
        self.sink = sink
        self.stats = Stats()
        self.frags = FragmentReassembler()
        self.decoder = FrameDecoder(self.frags)
        self.tcp = TcpReassembler()
        self.sip_ports = cfg.sip_ports
        self.heuristic = cfg.rtp_mode == "heuristic"
        self.rtp_lo, self.rtp_hi = cfg.rtp_ports
        self.n_partitions = max(1, int(sink.rtp_partitions))
        # (ip, port) -> [call_id, last_seen_us, close_at_us (0 = open), is_rtcp]
        self.endpoints: dict[tuple[bytes, int], list[Any]] = {}
        self.call_endpoints: dict[str, set[tuple[bytes, int]]] = {}
        self.calls: set[str] = set()
        self.streams: dict[tuple[bytes, int, bytes, int, int], _Stream] = {}
        # the same IPv4 streams keyed by integers (dst, dport, src, sport, ssrc), for the fast path
        self.fast_streams: dict[tuple[int, int, int, int, int], _Stream] = {}
        self.retired_streams: list[_Stream] = []
        self.pending: dict[int, list[_Stream]] = {}  # partition -> streams with packets this interval
        self.pending_count: dict[int, int] = {}
        self.batch_seq: dict[int, int] = {}
        self._dst_cache: dict[tuple[bytes, int], tuple[str, int, str]] = {}
        self._ip_cache: dict[bytes, str] = {}
        self.edge_start_us: int | None = None
        self.edge_seq = 0
        self.next_flush_us = 0
        self.next_sweep_us = 0
        self.last_ts_us = 0
        self.max_batch = cfg.max_batch_packets
        self.ep_removed = 0  # bumped when endpoints are removed
        self.ep_version = 0  # bumped whenever the endpoint table changes (the fast path re-reads it)
        self.block = BlockPath(self)

    # -- the per-frame hot path ---------------------------------------------------------------
    def process(self, ts_us: int, linktype: int, frame: Buffer) -> None:
        """Handle one captured frame. Never raises on bad input (counted in ``stats.errors``)."""
        st = self.stats
        st.frames += 1
        st.bytes += len(frame)
        if ts_us >= self.next_flush_us:
            self._on_time(ts_us)
        self.last_ts_us = ts_us
        try:
            dg = self.decoder.decode(ts_us, linktype, frame)
        except MalformedInput as exc:
            st.errors["decode", exc.reason.value] += 1
            return
        if dg is None:
            return
        proto, src, dst, sport, dport, payload, seq, flags = dg
        if proto == 17:
            st.udp += 1
            ep = self.endpoints.get((dst, dport))
            if ep is None:
                ep = self.endpoints.get((src, sport))
            if ep is not None and len(payload) >= 8 and payload[0] & 0xC0 == 0x80:
                ep[1] = ts_us
                self._media(ts_us, src, sport, dst, dport, payload, ep[3])
            elif sport in self.sip_ports or dport in self.sip_ports:
                self._sip_udp(ts_us, src, sport, dst, dport, payload)
            elif len(payload) > 12 and payload[0] in _SIP_FIRST and sip_proto.looks_like_sip(payload):
                self._sip_udp(ts_us, src, sport, dst, dport, payload)
            elif self.heuristic and self.rtp_lo <= dport <= self.rtp_hi and len(payload) >= 12 \
                    and payload[0] & 0xC0 == 0x80:
                self._media(ts_us, src, sport, dst, dport, payload, False)
            elif ep is not None:
                st.non_rtp_media += 1  # STUN, ZRTP, DTLS, keep-alives on a media port
            else:
                st.ignored_udp += 1
        else:
            st.tcp += 1
            key = (src, sport, dst, dport)
            if key in self.tcp.flows or sport in self.sip_ports or dport in self.sip_ports or \
                    (len(payload) > 12 and payload[0] in _SIP_FIRST and sip_proto.looks_like_sip(payload)):
                if not len(payload) and not flags & TCP_SYN and key not in self.tcp.flows:
                    return
                msgs, errors = self.tcp.segment(key, seq, flags, payload, ts_us)
                for err in errors:
                    st.errors["tcp", err.reason.value] += 1
                for m in msgs:
                    self._sip_message(ts_us, "tcp", src, sport, dst, dport, m)

    def consume(self, items: Iterable[tuple[int, int, Buffer]], every: int = 8192,
                housekeeping: Callable[[], bool] | None = None) -> None:
        """Process every frame of ``items``: the hot loop, with Ethernet/IPv4/UDP/RTP to a known
        endpoint inlined (one ``unpack_from`` for all headers, locals instead of attribute lookups).
        Everything else goes through :meth:`process`. ``housekeeping()`` runs every ``every`` frames
        and stops the loop by returning True. Same results as calling :meth:`process` per frame.
        """
        fast = _FAST_RTP.unpack_from
        eps_get = self.endpoints.get
        streams_get = self.streams.get
        process = self.process
        add_rtp = self._add_rtp
        vxlan = self.decoder.vxlan_ports
        st = self.stats
        i = 0
        for ts, lt, fr in items:
            i += 1
            if not i % every and housekeeping is not None and housekeeping():
                process(ts, lt, fr)
                break
            n = len(fr)
            if lt != 1 or n < 54 or ts >= self.next_flush_us:
                process(ts, lt, fr)
                continue
            et, vihl, tlen, frag, proto, src, dst, sport, dport, ulen, b0, b1, seq, rts, ssrc = fast(fr, 0)
            if et != 0x0800 or vihl != 0x45 or proto != 17 or frag & 0x3FFF or b0 != 0x80 \
                    or 192 <= b1 <= 223 or dport in vxlan or not 20 <= ulen - 8 <= tlen - 28 or tlen + 14 > n:
                process(ts, lt, fr)
                continue
            ep = eps_get((dst, dport))
            if ep is None:
                ep = eps_get((src, sport))
                if ep is None:
                    process(ts, lt, fr)
                    continue
            if ep[3]:  # RTCP port
                process(ts, lt, fr)
                continue
            ep[1] = ts
            st.frames += 1
            st.bytes += n
            st.udp += 1
            self.last_ts_us = ts
            key = (src, sport, dst, dport, ssrc)
            s = streams_get(key)
            if s is None or not s.seq or ts < s.last or len(s.seq) + 1 >= self.max_batch:
                add_rtp(ts, key, seq, rts, b1, bytes(fr[54:34 + ulen]))
                continue
            s.seq.append(seq)
            s.ts.append(rts)
            s.off.append(ts - s.base)
            s.ptm.append(b1)
            s.plen.append(ulen - 20)
            s.pl.append(fr[54:34 + ulen].tobytes() if type(fr) is memoryview else fr[54:34 + ulen])
            s.last = ts
            st.rtp_packets += 1
            part = s.partition
            c = self.pending_count[part] + 1
            self.pending_count[part] = c
            if c >= self.max_batch:
                self._flush_partition(part, ts)

    def _media(self, ts_us: int, src: bytes, sport: int, dst: bytes, dport: int, payload: Buffer,
               rtcp_port: bool) -> None:
        st = self.stats
        n = len(payload)
        if n < 8 or payload[0] & 0xC0 != 0x80:
            st.non_rtp_media += 1  # STUN, ZRTP, DTLS, keep-alives on a media port
            return
        b1 = payload[1]
        if rtcp_port or 192 <= b1 <= 223:  # RFC 5761 §4: RTCP PTs 200-204 (+ marker) on a muxed port
            st.rtcp_packets += 1
            return
        if n < 12:
            st.errors["rtp", "bad_rtp"] += 1
            return
        if payload[0] == 0x80:  # no padding, extension or CSRCs: the common case, header is 12 bytes
            seq, rts, ssrc = _RTP_FIXED.unpack_from(payload, 2)
            body = bytes(payload[12:])
        else:
            try:
                h = rtp_proto.parse_rtp(payload)
            except MalformedInput as exc:
                st.errors["rtp", exc.reason.value] += 1
                return
            seq, rts, ssrc = h.sequence, h.timestamp, h.ssrc
            body = bytes(payload[h.payload_offset:h.payload_offset + h.payload_length])
        self._add_rtp(ts_us, (src, sport, dst, dport, ssrc), seq, rts, b1, body)

    def _add_rtp(self, ts_us: int, key: tuple[bytes, int, bytes, int, int], seq: int, rts: int, b1: int,
                 body: Buffer) -> None:
        s = self.streams.get(key)
        if s is None:
            s = self._new_stream(key)
        if not s.seq:
            self.pending.setdefault(s.partition, []).append(s)
            s.base = s.last = ts_us
        elif ts_us < s.last:
            ts_us = s.last  # capture clock stepped back: keep each batch's offsets non-negative
        s.seq.append(seq)
        s.ts.append(rts)
        s.off.append(ts_us - s.base)
        s.ptm.append(b1)
        s.plen.append(len(body))
        s.pl.append(body)
        s.last = ts_us
        self.stats.rtp_packets += 1
        part = s.partition
        c = self.pending_count.get(part, 0) + 1
        self.pending_count[part] = c
        if c >= self.max_batch:
            self._flush_partition(part, ts_us)

    def _new_stream(self, key: tuple[bytes, int, bytes, int, int]) -> _Stream:
        self.partition_of(key[2], key[3])
        cached = self._dst_cache[(key[2], key[3])]
        s = _Stream(key, cached[0], cached[1], self._ip(key[0]), cached[2])
        self.streams[key] = s
        return s

    def _ip(self, ip: bytes) -> str:
        t = self._ip_cache.get(ip)
        if t is None:
            if len(self._ip_cache) > 100_000:
                self._ip_cache.clear()
            t = self._ip_cache[ip] = ip_text(ip)
        return t

    # -- SIP ---------------------------------------------------------------------------------
    def _sip_udp(self, ts_us: int, src: bytes, sport: int, dst: bytes, dport: int, payload: Buffer) -> None:
        data = bytes(payload)
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        self._sip_message(ts_us, "udp", src, sport, dst, dport, data)

    def _sip_message(self, ts_us: int, transport: str, src: bytes, sport: int, dst: bytes, dport: int,
                     data: bytes) -> None:
        st = self.stats
        try:
            msg = sip_proto.parse(data)
        except MalformedInput as exc:
            st.errors["sip", exc.reason.value] += 1
            return
        st.sip_messages += 1
        if transport == "udp":
            st.sip_udp += 1
        else:
            st.sip_tcp += 1
        if msg.is_request:
            st.sip_methods[msg.method or "?"] += 1
        else:
            st.sip_responses[str(msg.status_code)] += 1
        call_id = msg.call_id or ""
        if msg.is_request and msg.method == "INVITE" and call_id and len(self.calls) < 1_000_000:
            self.calls.add(call_id)
        summaries: list[dict[str, Any]] = []
        for body in msg.sdp_bodies():
            try:
                desc = sdp_proto.parse(body)
            except MalformedInput as exc:
                st.errors["sdp", exc.reason.value] += 1
                continue
            for m in desc.media:
                if m.media != "audio":
                    continue
                summaries.append({
                    "media": m.media, "connection_ip": m.connection, "port": m.port, "proto": m.proto,
                    "payload_types": list(m.payload_types), "direction": m.direction,
                })
                self._learn(ts_us, call_id, m)
        self._maybe_close(ts_us, msg, call_id)
        if self.edge_start_us is None:
            self.edge_start_us = ts_us
        self.edge_seq += 1
        record = {
            "site": self.cfg.site, "edge_id": self.cfg.edge_id, "edge_seq": self.edge_seq,
            "edge_start_us": self.edge_start_us, "capture_ts_us": ts_us, "transport": transport,
            "src_ip": self._ip(src), "src_port": sport, "dst_ip": self._ip(dst), "dst_port": dport,
            "raw": data, "call_id": call_id, "is_request": msg.is_request, "method": msg.method,
            "status_code": msg.status_code, "cseq_num": msg.cseq_num, "cseq_method": msg.cseq_method,
            "from_tag": msg.from_tag, "to_tag": msg.to_tag, "sdp_media": summaries,
        }
        self.sink.send_sip(f"{self.cfg.site}/{call_id}".encode(), record)

    def _learn(self, ts_us: int, call_id: str, m: sdp_proto.SdpMedia) -> None:
        """Remember where a party receives audio (RTP) and RTCP (RFC 3605 a=rtcp, else port + 1)."""
        if not m.port or not m.connection:
            return
        ip = ip_packed(m.connection)
        if ip is None or ip == b"\x00\x00\x00\x00":  # c=0.0.0.0: hold (RFC 3264 §8.4), nothing to learn
            return
        eps = self.call_endpoints.setdefault(call_id, set())
        for port, is_rtcp in ((m.port, False),) if m.rtcp_mux else ((m.port, False), (m.rtcp_port or m.port + 1, True)):
            key = (ip, port)
            ent = self.endpoints.get(key)
            if ent is None:
                self.stats.endpoints_learned += 1
            else:
                if ent[0] != call_id:
                    old = self.call_endpoints.get(ent[0])
                    if old is not None:
                        old.discard(key)
                if ent[3] != is_rtcp:
                    self.ep_removed += 1  # an RTP endpoint became RTCP: the fast path must drop it now
            self.endpoints[key] = [call_id, ts_us, 0, is_rtcp]
            self.ep_version += 1
            eps.add(key)

    def _maybe_close(self, ts_us: int, msg: sip_proto.SipMessage, call_id: str) -> None:
        """BYE, CANCEL or a final error to INVITE: close the call's endpoints after the grace time."""
        closing = (msg.is_request and msg.method in ("BYE", "CANCEL")) or (
            not msg.is_request and msg.status_code is not None and msg.status_code >= 300
            and msg.cseq_method == "INVITE" and msg.status_code not in (401, 407))
        if not closing:
            return
        close_at = ts_us + self.cfg.rtp_grace_us
        for key in self.call_endpoints.get(call_id, ()):
            ent = self.endpoints.get(key)
            if ent is not None and not ent[2]:
                ent[2] = close_at

    # -- time-driven work --------------------------------------------------------------------
    def _on_time(self, ts_us: int) -> None:
        if self.next_flush_us == 0:  # first packet: align the schedule to it
            self.next_flush_us = ts_us + self.cfg.flush_us
            self.next_sweep_us = ts_us + _SWEEP_US
            if self.edge_start_us is None:
                self.edge_start_us = ts_us
            return
        self.flush(ts_us)
        self.next_flush_us = ts_us + self.cfg.flush_us
        if ts_us >= self.next_sweep_us:
            self.sweep(ts_us)
            self.next_sweep_us = ts_us + _SWEEP_US

    def tick(self, now_us: int) -> None:
        """Live capture with no packets: flush on the wall clock (the kernel stamps in the same clock)."""
        if self.next_flush_us and now_us >= self.next_flush_us:
            self._on_time(now_us)

    def sweep(self, now_us: int) -> None:
        """Expire fragments, TCP flows, closed or idle media endpoints and idle streams."""
        st = self.stats
        self.frags.expire(now_us)
        msgs, _ = self.tcp.expire(now_us)
        for (src, sport, dst, dport), m in msgs:
            self._sip_message(now_us, "tcp", src, sport, dst, dport, m)
        eps_get = self.endpoints.get
        for s in self.streams.values():  # the fast path leaves endpoint activity to be read from here
            if now_us - s.last < 2 * _SWEEP_US:
                for k in ((s.key[2], s.dst_port), (s.key[0], s.src_port)):
                    e = eps_get(k)
                    if e is not None and s.last > e[1]:
                        e[1] = s.last
        dead = [k for k, e in self.endpoints.items()
                if (e[2] and now_us >= e[2]) or now_us - e[1] > self.cfg.rtp_idle_us]
        for k in dead:
            ent = self.endpoints.pop(k)
            eps = self.call_endpoints.get(ent[0])
            if eps is not None:
                eps.discard(k)
                if not eps:
                    del self.call_endpoints[ent[0]]
        st.endpoints_closed += len(dead)
        if dead:
            self.ep_version += 1
            self.ep_removed += 1
        idle = [k for k, s in self.streams.items() if not s.seq and now_us - s.last > 60_000_000]
        for sk in idle:
            s = self.streams.pop(sk)
            if len(sk[0]) == 4 and len(sk[2]) == 4:
                self.fast_streams.pop((int.from_bytes(sk[2], "big"), sk[3], int.from_bytes(sk[0], "big"), sk[1], sk[4]),
                                      None)
            if self.cfg.keep_stream_stats and len(self.retired_streams) < self.cfg.max_stream_stats:
                self.retired_streams.append(s)

    def flush(self, now_us: int) -> None:
        """Send one RtpBatch per partition holding every stream with packets since the last flush."""
        fast = self.block.entries(None) if self.block.interval.count else {}
        for part in sorted(set(self.pending) | set(fast)):
            self._flush_partition(part, now_us, fast.get(part, []))

    def _seq_stats(self, s: _Stream, seqs: Iterable[int]) -> None:
        """Running sequence statistics: each packet's extended sequence number is the previous one's
        plus the signed 16-bit distance (RFC 3550 A.1 without the probation rules); keeps the first,
        the highest and the last. :mod:`.fastpath` computes exactly the same with numpy."""
        last = s.last_ext
        mx = s.max_ext
        n = 0
        for q in seqs:
            n += 1
            if last < 0:
                s.first_ext = last = mx = q
                continue
            last += ((q - last + 0x8000) & 0xFFFF) - 0x8000
            if last > mx:
                mx = last
        s.last_ext = last
        s.max_ext = mx
        s.packets += n

    def _flush_partition(self, part: int, now_us: int, fast: list[dict[str, Any]] | None = None) -> None:
        if fast is None:
            fast = self.block.entries(part).get(part, []) if self.block.interval.count else []
        streams = self.pending.pop(part, None) or []
        self.pending_count.pop(part, None)
        entries = fast
        for s in streams:
            if not s.seq:
                continue
            if s.payload_type < 0:
                s.payload_type = s.ptm[0] & 0x7F
            self._seq_stats(s, s.seq)
            entries.append(pack_entry(s))
            s._reset()
        if not entries:
            return
        if streams and len(entries) > 1:  # fast-path entries alone are already in this order
            entries.sort(key=_entry_order)
        bseq = self.batch_seq.get(part, 0)
        self.batch_seq[part] = bseq + 1
        record = {"site": self.cfg.site, "edge_id": self.cfg.edge_id,
                  "edge_start_us": self.edge_start_us or now_us, "batch_seq": bseq,
                  "flush_ts_us": now_us, "streams": entries}
        self.stats.rtp_batches += 1
        self.stats.rtp_streams_flushed += len(entries)
        self.sink.send_rtp(part, f"{self.cfg.site}/{self.cfg.edge_id}/{part}".encode(), record)

    def consume_blocks(self, blocks: Iterable[tuple[int, bytes, list[int], Any, Any]],
                       housekeeping: Callable[[], bool] | None = None) -> None:
        """Process blocks from :func:`edge_capture.pcapfile.read_pcap_blocks` on the vectorised path
        (:mod:`.fastpath`); same records as :meth:`process` per frame."""
        for blk in blocks:
            self.block.consume_block(*blk)
            if housekeeping is not None and housekeeping():
                break

    def partition_of(self, ip: bytes, port: int) -> int:
        """Partition of the stream key ``site/ip/port`` in the rtp topic (cached)."""
        dkey = (ip, port)
        cached = self._dst_cache.get(dkey)
        if cached is None:
            dst_ip = self._ip(ip)
            stream_key = f"{self.cfg.site}/{dst_ip}/{port}"
            cached = (stream_key, partition_for(stream_key.encode(), self.n_partitions), dst_ip)
            self._dst_cache[dkey] = cached
        return cached[1]

    def finish(self) -> None:
        """End of input: send every open batch and any SIP completed by skipping TCP holes."""
        self.flush(self.last_ts_us)

    # -- summaries -----------------------------------------------------------------------------
    def all_streams(self) -> list[_Stream]:
        return self.retired_streams + list(self.streams.values())

    def summary(self) -> dict[str, Any]:
        """The dry-run summary (see ``--summary-json``)."""
        st = self.stats
        streams = []
        for s in sorted(self.all_streams(), key=lambda s: (s.src_ip, s.src_port, s.dst_ip, s.dst_port, s.ssrc)):
            expected = s.max_ext - s.first_ext + 1 if s.first_ext >= 0 else 0
            streams.append({"src": f"{s.src_ip}:{s.src_port}", "dst": f"{s.dst_ip}:{s.dst_port}",
                            "ssrc": s.ssrc, "payload_type": s.payload_type, "packets": s.packets,
                            "lost": expected - s.packets, "stream_key": s.stream_key, "partition": s.partition})
        errors: dict[str, int] = {}
        for (stage, reason), n in sorted(st.errors.items()):
            errors[f"{stage}/{reason}"] = n
        return {
            "frames": st.frames, "bytes": st.bytes, "sip_messages": st.sip_messages,
            "sip_udp": st.sip_udp, "sip_tcp": st.sip_tcp,
            "sip_methods": dict(sorted(st.sip_methods.items())),
            "sip_responses": dict(sorted(st.sip_responses.items())),
            "calls": len(self.calls), "rtp_packets": st.rtp_packets, "rtcp_packets": st.rtcp_packets,
            "rtp_batches": st.rtp_batches, "rtp_streams": streams, "errors": errors,
            "fragments": {"seen": self.decoder.fragments, "reassembled": self.frags.reassembled,
                          "pending": self.frags.pending, "expired": self.frags.expired},
            "tunnels": self.decoder.tunnels, "non_rtp_media": st.non_rtp_media,
            "endpoints_learned": st.endpoints_learned,
        }
