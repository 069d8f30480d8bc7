"""Pure frame decoding: link layers, tunnels, IPv4/IPv6 (with fragment reassembly) down to UDP/TCP.

No I/O, no clocks: capture time is an argument. One entry point, :meth:`FrameDecoder.decode`, takes a
frame and its link type and returns one :data:`Datagram` tuple (or ``None`` for frames that carry no
UDP/TCP we care about, or a fragment still waiting for its siblings). Bad bytes raise only
:class:`~spanscribe.protocols.errors.MalformedInput`; every other failure inside is translated to it
at the entry point (the capturer must never die on a packet).

Hot path: Ethernet / IPv4 (no options, not fragmented) / UDP is decoded with one
``struct.Struct.unpack_from`` on the frame (about 0.5 us), everything else takes the general path.

Layers: Ethernet II, 802.1Q / 802.1ad QinQ (0x8100, 0x88a8, 0x9100), MPLS, PPPoE session / PPP,
Linux SLL and SLL2, raw IP (DLT 101/12/14/228/229), BSD loopback (DLT_NULL, DLT_LOOP), IPv4, IPv6 with
extension headers, GRE (IPv4/IPv6/transparent Ethernet bridging 0x6558/PPP), ERSPAN type I, II and III,
VXLAN (UDP 4789), IP-in-IP (protocol 4 and 41).
"""
from __future__ import annotations

import struct

from spanscribe.protocols.errors import MalformedInput, Reason

Buffer = bytes | bytearray | memoryview

# Link types (pcap LINKTYPE_* values; DLT_RAW is 12 or 14 on some BSDs).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_BSD12 = 12
LINKTYPE_RAW_BSD14 = 14
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset({0, 1, 9, 12, 14, 50, 51, 101, 108, 113, 228, 229, 276})

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)
ETH_MPLS = (0x8847, 0x8848)
ETH_PPPOE_SESSION = 0x8864
ETH_TEB = 0x6558
ETH_ERSPAN2 = 0x88BE
ETH_ERSPAN3 = 0x22EB
ETH_PPP = 0x880B

IPPROTO_HOPOPTS = 0
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MH = 135
IPV6_EXT_HEADERS = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_MH, 139, 140})

VXLAN_PORT = 4789
MAX_DEPTH = 8  # tunnels inside tunnels: bounded so a crafted frame cannot recurse without end

# A decoded UDP or TCP datagram:
# (proto, src_ip, dst_ip, sport, dport, payload, tcp_seq, tcp_flags)
# src_ip/dst_ip are packed bytes (4 or 16); payload is a memoryview/bytes slice of the transport
# payload; tcp_seq/tcp_flags are 0 for UDP.
Datagram = tuple[int, bytes, bytes, int, int, Buffer, int, int]

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04

_FAST = struct.Struct("!12xHBxHHHxBH4s4sHHH")  # eth type, ver/ihl, tot len, id, frag, proto, csum, src, dst, sport, dport, ulen
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32LE = struct.Struct("<I")
_IPV4 = struct.Struct("!BxHHHxB2x4s4s")  # ver/ihl, total length, id, flags/frag, proto, src, dst
_IPV6 = struct.Struct("!4xHBx16s16s")  # payload length, next header, src, dst
_UDP = struct.Struct("!HHH")
_TCP = struct.Struct("!HHIIBB")  # sport, dport, seq, ack, data offset, flags
_GRE = struct.Struct("!HH")
_FRAG6 = struct.Struct("!BxHI")


class FragmentReassembler:
    """IPv4 and IPv6 fragment reassembly with bounded memory and capture-time expiry.

    ``add()`` returns the whole transport payload once every fragment has arrived (RFC 791 §3.2,
    RFC 8200 §4.5), else ``None``. At most ``max_datagrams`` datagrams and ``max_bytes`` bytes wait at
    once (the oldest is evicted and counted as expired); datagrams older than ``timeout_us`` of capture
    time are dropped by :meth:`expire`.
    """

    def __init__(self, max_datagrams: int = 1024, max_bytes: int = 8 << 20, timeout_us: int = 30_000_000,
                 max_datagram_bytes: int = 65535 + 8) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_us = timeout_us
        self.max_datagram_bytes = max_datagram_bytes
        # key -> [first_ts_us, total_len or -1, bytes_held, {offset: bytes}]
        self._pending: dict[tuple[object, ...], list[object]] = {}
        self._bytes = 0
        self.reassembled = 0
        self.expired = 0

    @property
    def pending(self) -> int:
        """Datagrams waiting for fragments."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def add(self, key: tuple[object, ...], offset: int, more: bool, data: Buffer, ts_us: int) -> bytes | None:
        """Add one fragment (``offset`` in bytes). Returns the reassembled payload or None.

        Raises:
            MalformedInput(BAD_FRAGMENT): the fragment overruns the maximum datagram size, a
                non-final fragment is not a multiple of 8 bytes, or two final fragments disagree.
        """
        n = len(data)
        end = offset + n
        if end > self.max_datagram_bytes:
            raise MalformedInput(Reason.BAD_FRAGMENT, f"IP fragment: ends at {end}, beyond the maximum datagram size")
        if more and n % 8:
            raise MalformedInput(Reason.BAD_FRAGMENT, "IP fragment: non-final fragment length is not a multiple of 8")
        entry = self._pending.get(key)
        if entry is None:
            while self._pending and (len(self._pending) >= self.max_datagrams or self._bytes + n > self.max_bytes):
                self._evict_oldest()
            entry = [ts_us, -1, 0, {}]
            self._pending[key] = entry
        frags: dict[int, bytes] = entry[3]  # type: ignore[assignment]
        if not more:
            if entry[1] != -1 and entry[1] != end:
                self._drop(key)
                raise MalformedInput(Reason.BAD_FRAGMENT, "IP fragment: two final fragments disagree on the length")
            entry[1] = end
        if offset in frags:  # duplicate (retransmission): keep the first copy
            return None
        frags[offset] = bytes(data)
        entry[2] = int(entry[2]) + n  # type: ignore[call-overload]
        self._bytes += n
        total = entry[1]
        if total == -1:
            return None
        # Complete when the fragments cover [0, total) without a hole.
        pos = 0
        for off in sorted(frags):
            if off > pos:
                return None
            pos = max(pos, off + len(frags[off]))
        if pos < total:  # type: ignore[operator]
            return None
        buf = bytearray(int(total))  # type: ignore[call-overload]
        for off in sorted(frags):
            chunk = frags[off]
            room = int(total) - off  # type: ignore[call-overload]
            buf[off:off + min(len(chunk), room)] = chunk[:room]
        self._drop(key)
        self.reassembled += 1
        return bytes(buf)

    def _drop(self, key: tuple[object, ...]) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._bytes -= int(entry[2])  # type: ignore[call-overload]

    def _evict_oldest(self) -> None:
        key = next(iter(self._pending))  # insertion order == arrival order of first fragments
        self._drop(key)
        self.expired += 1

    def expire(self, now_us: int) -> int:
        """Drop datagrams whose first fragment is older than the timeout. Returns how many."""
        limit = now_us - self.timeout_us
        n = 0
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if int(entry[0]) > limit:  # type: ignore[call-overload]
                break
            self._drop(key)
            n += 1
        self.expired += n
        return n


class FrameDecoder:
    """Decode captured frames down to UDP/TCP datagrams (see module doc).

    Counters (plain ints, read by the pipeline): ``non_ip`` (frames with no IP), ``other_proto``
    (IP carrying neither UDP/TCP nor a tunnel), ``tunnels`` (decapsulations), ``fragments``.
    """

    def __init__(self, reassembler: FragmentReassembler | None = None, vxlan_ports: tuple[int, ...] = (VXLAN_PORT,)) -> None:
        self.frags = reassembler or FragmentReassembler()
        self.vxlan_ports = frozenset(vxlan_ports)
        self.non_ip = 0
        self.other_proto = 0
        self.tunnels = 0
        self.fragments = 0

    # -- entry point --------------------------------------------------------------------------
    def decode(self, ts_us: int, linktype: int, frame: Buffer) -> Datagram | None:
        """Decode one frame. Returns a Datagram, or None (not UDP/TCP, or a fragment waiting).

        Raises:
            MalformedInput: the frame is truncated or inconsistent (reason says which layer).
        """
        if linktype == 1 and len(frame) >= 42:
            try:
                et, vihl, tlen, _id, frag, proto, _c, src, dst, sport, dport, ulen = _FAST.unpack_from(frame, 0)
            except struct.error:
                pass
            else:
                if et == 0x0800 and vihl == 0x45 and proto == 17 and not frag & 0x3FFF and tlen >= 28 \
                        and 14 + tlen <= len(frame) and dport not in self.vxlan_ports:
                    if 8 <= ulen <= tlen - 20:
                        return (17, src, dst, sport, dport, memoryview(frame)[42:34 + ulen], 0, 0)
        try:
            return self._link(ts_us, linktype, memoryview(frame), 0)
        except MalformedInput:
            raise
        except (struct.error, IndexError, ValueError) as exc:  # a length check we missed: still bad input
            raise MalformedInput(Reason.TRUNCATED, f"frame: {type(exc).__name__}: {exc}") from None

    # -- link layers --------------------------------------------------------------------------
    def _link(self, ts_us: int, linktype: int, mv: memoryview, depth: int) -> Datagram | None:
        if linktype == LINKTYPE_ETHERNET:
            return self._ethernet(ts_us, mv, depth)
        if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_BSD12, LINKTYPE_RAW_BSD14, LINKTYPE_IPV4, LINKTYPE_IPV6):
            return self._ip_guess(ts_us, mv, depth)
        if linktype == LINKTYPE_LINUX_SLL:
            if len(mv) < 16:
                raise MalformedInput(Reason.BAD_LINK, "SLL: truncated header")
            return self._ethertype(ts_us, _U16.unpack_from(mv, 14)[0], mv[16:], depth)
        if linktype == LINKTYPE_LINUX_SLL2:
            if len(mv) < 20:
                raise MalformedInput(Reason.BAD_LINK, "SLL2: truncated header")
            return self._ethertype(ts_us, _U16.unpack_from(mv, 0)[0], mv[20:], depth)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(mv) < 4:
                raise MalformedInput(Reason.BAD_LINK, "loopback: truncated address family")
            # DLT_NULL is host byte order (of the capturing host), DLT_LOOP network order: accept both.
            fam = _U32LE.unpack_from(mv, 0)[0] if linktype == LINKTYPE_NULL else _U32.unpack_from(mv, 0)[0]
            if fam > 0xFFFF:
                fam = _U32.unpack_from(mv, 0)[0] if linktype == LINKTYPE_NULL else _U32LE.unpack_from(mv, 0)[0]
            if fam == 2:
                return self._ipv4(ts_us, mv[4:], depth)
            if fam in (10, 24, 28, 30):  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
                return self._ipv6(ts_us, mv[4:], depth)
            self.non_ip += 1
            return None
        if linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
            return self._ppp(ts_us, mv, depth)
        if linktype == LINKTYPE_PPP_ETHER:
            return self._pppoe(ts_us, mv, depth)
        raise MalformedInput(Reason.UNSUPPORTED, f"link type {linktype} is not supported")

    def _ethernet(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        if len(mv) < 14:
            raise MalformedInput(Reason.BAD_LINK, "Ethernet: truncated header")
        et = _U16.unpack_from(mv, 12)[0]
        if et <= 1500:  # 802.3 length field (LLC/SNAP, STP, ...): no IP for us
            self.non_ip += 1
            return None
        return self._ethertype(ts_us, et, mv[14:], depth)

    def _ethertype(self, ts_us: int, et: int, mv: memoryview, depth: int) -> Datagram | None:
        # 802.1Q / 802.1ad QinQ tags, any number (bounded by the frame length).
        while et in ETH_VLAN:
            if len(mv) < 4:
                raise MalformedInput(Reason.BAD_LINK, "VLAN: truncated tag")
            et = _U16.unpack_from(mv, 2)[0]
            mv = mv[4:]
        if et == ETH_IPV4:
            return self._ipv4(ts_us, mv, depth)
        if et == ETH_IPV6:
            return self._ipv6(ts_us, mv, depth)
        if et in ETH_MPLS:
            # Pop labels to the bottom of stack, then guess IPv4/IPv6 from the version nibble.
            while True:
                if len(mv) < 4:
                    raise MalformedInput(Reason.BAD_LINK, "MPLS: truncated label stack")
                bos = mv[2] & 1
                mv = mv[4:]
                if bos:
                    break
            return self._ip_guess(ts_us, mv, depth)
        if et == ETH_PPPOE_SESSION:
            return self._pppoe(ts_us, mv, depth)
        if et == ETH_TEB and depth < MAX_DEPTH:
            self.tunnels += 1
            return self._ethernet(ts_us, mv, depth + 1)
        self.non_ip += 1
        return None

    def _pppoe(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        if len(mv) < 6:
            raise MalformedInput(Reason.BAD_LINK, "PPPoE: truncated header")
        if mv[1] != 0:  # code 0 = session data
            self.non_ip += 1
            return None
        plen = _U16.unpack_from(mv, 4)[0]
        return self._ppp(ts_us, mv[6:6 + plen], depth)

    def _ppp(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        if len(mv) >= 2 and mv[0] == 0xFF and mv[1] == 0x03:  # HDLC address/control
            mv = mv[2:]
        if not len(mv):
            raise MalformedInput(Reason.BAD_LINK, "PPP: truncated protocol field")
        if mv[0] & 1:  # protocol field compression: one byte
            proto = mv[0]
            mv = mv[1:]
        else:
            if len(mv) < 2:
                raise MalformedInput(Reason.BAD_LINK, "PPP: truncated protocol field")
            proto = _U16.unpack_from(mv, 0)[0]
            mv = mv[2:]
        if proto == 0x0021:
            return self._ipv4(ts_us, mv, depth)
        if proto == 0x0057:
            return self._ipv6(ts_us, mv, depth)
        self.non_ip += 1
        return None

    # -- IP -----------------------------------------------------------------------------------
    def _ip_guess(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        if not len(mv):
            raise MalformedInput(Reason.BAD_IP, "IP: empty packet")
        v = mv[0] >> 4
        if v == 4:
            return self._ipv4(ts_us, mv, depth)
        if v == 6:
            return self._ipv6(ts_us, mv, depth)
        raise MalformedInput(Reason.BAD_VERSION, f"IP: version {v}")

    def _ipv4(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        if len(mv) < 20:
            raise MalformedInput(Reason.BAD_IP, "IPv4: truncated header")
        vihl, tlen, ident, frag, proto, src, dst = _IPV4.unpack_from(mv, 0)
        if vihl >> 4 != 4:
            raise MalformedInput(Reason.BAD_VERSION, f"IPv4: version {vihl >> 4}")
        hl = (vihl & 0x0F) * 4
        if hl < 20 or tlen < hl:
            raise MalformedInput(Reason.BAD_IP, f"IPv4: header length {hl}, total length {tlen}")
        if tlen > len(mv):
            # Truncated by the snap length, or TSO-offloaded (total length 0 is handled above):
            # decode what we have, the transport layer checks its own lengths.
            if tlen == 0:
                tlen = len(mv)
            else:
                raise MalformedInput(Reason.TRUNCATED, f"IPv4: total length {tlen} beyond captured {len(mv)} bytes")
        payload = mv[hl:tlen]
        off = (frag & 0x1FFF) * 8
        more = bool(frag & 0x2000)
        if off or more:
            self.fragments += 1
            whole = self.frags.add((4, src, dst, proto, ident), off, more, payload, ts_us)
            if whole is None:
                return None
            payload = memoryview(whole)
        return self._transport(ts_us, proto, src, dst, payload, depth)

    def _ipv6(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        if len(mv) < 40:
            raise MalformedInput(Reason.BAD_IP, "IPv6: truncated header")
        if mv[0] >> 4 != 6:
            raise MalformedInput(Reason.BAD_VERSION, f"IPv6: version {mv[0] >> 4}")
        plen, nh, src, dst = _IPV6.unpack_from(mv, 0)
        if plen == 0:  # jumbogram or TSO: take what was captured
            plen = len(mv) - 40
        if 40 + plen > len(mv):
            raise MalformedInput(Reason.TRUNCATED, f"IPv6: payload length {plen} beyond captured {len(mv) - 40} bytes")
        rest = mv[40:40 + plen]
        # Walk extension headers (RFC 8200 §4), bounded by the packet length.
        hops = 0
        while nh in IPV6_EXT_HEADERS or nh == IPPROTO_FRAGMENT or nh == IPPROTO_AH:
            hops += 1
            if hops > 16:
                raise MalformedInput(Reason.BAD_IP, "IPv6: too many extension headers")
            if len(rest) < 8:
                raise MalformedInput(Reason.BAD_IP, "IPv6: truncated extension header")
            if nh == IPPROTO_FRAGMENT:
                nxt, offm, ident = _FRAG6.unpack_from(rest, 0)
                off = offm & 0xFFF8
                more = bool(offm & 1)
                frag_payload = rest[8:]
                if off == 0 and not more:  # atomic fragment (RFC 6946)
                    nh = nxt
                    rest = frag_payload
                    continue
                self.fragments += 1
                whole = self.frags.add((6, src, dst, ident), off, more, frag_payload, ts_us)
                if whole is None:
                    return None
                # The next header of the first fragment names the fragmentable part; since every
                # fragment carries the same value we use this one's.
                nh = nxt
                rest = memoryview(whole)
                continue
            if nh == IPPROTO_AH:
                size = (rest[1] + 2) * 4
            else:
                size = (rest[1] + 1) * 8
            if size > len(rest):
                raise MalformedInput(Reason.BAD_IP, "IPv6: extension header overruns the packet")
            nh = rest[0]
            rest = rest[size:]
        return self._transport(ts_us, nh, src, dst, rest, depth)

    # -- transport and tunnels ---------------------------------------------------------------
    def _transport(self, ts_us: int, proto: int, src: bytes, dst: bytes, mv: memoryview, depth: int) -> Datagram | None:
        if proto == IPPROTO_UDP:
            if len(mv) < 8:
                raise MalformedInput(Reason.TRUNCATED, "UDP: truncated header")
            sport, dport, ulen = _UDP.unpack_from(mv, 0)
            if 8 <= ulen <= len(mv):
                data = mv[8:ulen]
            elif ulen == 0 and len(src) == 16:  # IPv6 jumbogram
                data = mv[8:]
            else:
                raise MalformedInput(Reason.TRUNCATED, f"UDP: length {ulen} with {len(mv)} bytes captured")
            if dport in self.vxlan_ports and depth < MAX_DEPTH and len(data) >= 8 and data[0] & 0x08:
                self.tunnels += 1
                return self._ethernet(ts_us, data[8:], depth + 1)
            return (17, src, dst, sport, dport, data, 0, 0)
        if proto == IPPROTO_TCP:
            if len(mv) < 20:
                raise MalformedInput(Reason.BAD_TCP, "TCP: truncated header")
            sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(mv, 0)
            hl = (doff >> 4) * 4
            if hl < 20 or hl > len(mv):
                raise MalformedInput(Reason.BAD_TCP, f"TCP: header length {hl} with {len(mv)} bytes")
            return (6, src, dst, sport, dport, mv[hl:], seq, flags)
        if depth >= MAX_DEPTH:
            raise MalformedInput(Reason.UNSUPPORTED, "tunnel nesting too deep")
        if proto == IPPROTO_IPIP:
            self.tunnels += 1
            return self._ipv4(ts_us, mv, depth + 1)
        if proto == IPPROTO_IPV6:
            self.tunnels += 1
            return self._ipv6(ts_us, mv, depth + 1)
        if proto == IPPROTO_GRE:
            return self._gre(ts_us, mv, depth + 1)
        self.other_proto += 1
        return None

    def _gre(self, ts_us: int, mv: memoryview, depth: int) -> Datagram | None:
        """GRE (RFC 2784/2890), with ERSPAN type I/II (0x88be) and III (0x22eb)."""
        if len(mv) < 4:
            raise MalformedInput(Reason.UNSUPPORTED, "GRE: truncated header")
        flags, ptype = _GRE.unpack_from(mv, 0)
        version = flags & 7
        off = 4
        if version == 1:  # enhanced GRE (PPTP): key always, seq/ack optional
            off += 4
            if flags & 0x1000:
                off += 4
            if flags & 0x0080:
                off += 4
            if len(mv) < off:
                raise MalformedInput(Reason.UNSUPPORTED, "GRE: truncated PPTP header")
            self.tunnels += 1
            return self._ppp(ts_us, mv[off:], depth)
        if flags & 0x8000 or flags & 0x4000:  # checksum (+ reserved1) or routing present
            off += 4
        if flags & 0x2000:  # key
            off += 4
        has_seq = bool(flags & 0x1000)
        if has_seq:
            off += 4
        if len(mv) < off:
            raise MalformedInput(Reason.UNSUPPORTED, "GRE: truncated optional fields")
        inner = mv[off:]
        self.tunnels += 1
        if ptype == ETH_ERSPAN2:
            if not has_seq:  # ERSPAN type I: no ERSPAN header, Ethernet follows the GRE header
                return self._ethernet(ts_us, inner, depth)
            if len(inner) < 8:
                raise MalformedInput(Reason.UNSUPPORTED, "ERSPAN II: truncated header")
            return self._ethernet(ts_us, inner[8:], depth)
        if ptype == ETH_ERSPAN3:
            if len(inner) < 12:
                raise MalformedInput(Reason.UNSUPPORTED, "ERSPAN III: truncated header")
            hl = 12
            if inner[11] & 0x01:  # O flag: 8-byte platform specific subheader follows
                hl += 8
            if len(inner) < hl:
                raise MalformedInput(Reason.UNSUPPORTED, "ERSPAN III: truncated platform subheader")
            return self._ethernet(ts_us, inner[hl:], depth)
        if ptype == ETH_PPP:
            return self._ppp(ts_us, inner, depth)
        return self._ethertype(ts_us, ptype, inner, depth)
