"""Frame builders for the edge tests (crafted packets, no capture files)."""
from __future__ import annotations

import socket
import struct

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ip4(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, a)


def ip6(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, seq: int, payload: bytes = b"", flags: int = 0x18, ack: int = 0) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, 5 << 4, flags, 65535, 0, 0) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1, frag_off: int = 0, more: bool = False,
         options: bytes = b"") -> bytes:
    hl = 20 + len(options)
    flags = (0x2000 if more else 0) | (frag_off // 8)
    return struct.pack("!BBHHHBBH4s4s", 0x40 | (hl // 4), 0, hl + len(payload), ident, flags, 64, proto, 0,
                       ip4(src), ip4(dst)) + options + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, ip6(src), ip6(dst)) + payload


def frag6(nh: int, offset: int, more: bool, ident: int, data: bytes) -> bytes:
    return struct.pack("!BBHI", nh, 0, offset | (1 if more else 0), ident) + data


def eth(payload: bytes, ethertype: int = 0x0800, vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet II; ``vlans`` = ((tpid, vid), ...) outermost first (0x8100, 0x88a8, 0x9100)."""
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    return MAC_B + MAC_A + tags + struct.pack("!H", ethertype) + payload


def sll(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", proto) + payload


def sll2(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + payload


def gre(payload: bytes, ptype: int, seq: int | None = None, key: int | None = None) -> bytes:
    flags = (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    out = struct.pack("!HH", flags, ptype)
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out + payload


def erspan2(inner_eth: bytes, session: int = 1) -> bytes:
    hdr = struct.pack("!HHI", 0x1000 | 100, 0x0000 | session, 0)  # ver=1, vlan 100, session
    return gre(hdr + inner_eth, 0x88BE, seq=1)


def erspan3(inner_eth: bytes, platform: bool = False) -> bytes:
    hdr = struct.pack("!HHIHH", 0x2000 | 100, 1, 12345, 0, 1 if platform else 0)
    if platform:
        hdr += b"\0" * 8
    return gre(hdr + inner_eth, 0x22EB, seq=1)


def vxlan(inner_eth: bytes, vni: int = 42) -> bytes:
    return struct.pack("!BBHI", 0x08, 0, 0, vni << 8) + inner_eth


def rtp(seq: int, ts: int, ssrc: int, payload: bytes = b"\xd5" * 160, pt: int = 8, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def sip_invite(call_id: str = "abc@test", ip: str = "10.0.0.1", port: int = 40000, pad: int = 0,
               method: str = "INVITE", cseq: int = 1) -> bytes:
    body = (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n").encode()
    if pad:
        body += b"a=x-pad:" + b"p" * pad + b"\r\n"
    head = (f"{method} sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK1\r\n"
            f"From: <sip:alice@{ip}>;tag=a1\r\nTo: <sip:bob@10.0.0.2>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:alice@{ip}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def sip_response(status: int, call_id: str = "abc@test", cseq_method: str = "INVITE", sdp_ip: str | None = None,
                 sdp_port: int = 0, cseq: int = 1) -> bytes:
    body = b""
    if sdp_ip:
        body = (f"v=0\r\no=- 2 1 IN IP4 {sdp_ip}\r\ns=-\r\nc=IN IP4 {sdp_ip}\r\nt=0 0\r\n"
                f"m=audio {sdp_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n").encode()
    head = (f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
            f"From: <sip:alice@10.0.0.1>;tag=a1\r\nTo: <sip:bob@10.0.0.2>;tag=b1\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {cseq_method}\r\n" + ("Content-Type: application/sdp\r\n" if body else "") +
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def sip_bye(call_id: str = "abc@test") -> bytes:
    return (f"BYE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n"
            f"From: <sip:alice@10.0.0.1>;tag=a1\r\nTo: <sip:bob@10.0.0.2>;tag=b1\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()


def write_pcap(path: str, frames: list[tuple[int, bytes]], linktype: int = 1, nanos: bool = False) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for ts, fr in frames:
            frac = (ts % 1_000_000) * (1000 if nanos else 1)
            f.write(struct.pack("<IIII", ts // 1_000_000, frac, len(fr), len(fr)) + fr)


def write_pcapng(path: str, frames: list[tuple[int, bytes]], linktype: int = 1) -> None:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(block(1, struct.pack("<HHI", linktype, 0, 262144) + struct.pack("<HHB3x", 9, 1, 9) + b"\0\0\0\0"))
        for ts, fr in frames:
            ticks = ts * 1000  # if_tsresol 9: nanoseconds
            f.write(block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(fr), len(fr)) + fr))
