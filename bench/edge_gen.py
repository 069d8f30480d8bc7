"""Generate a pcap of N concurrent 20 ms G.711 calls (SIP INVITE/200/ACK with SDP, RTP both ways, BYE/200).

    python bench/edge_gen.py --calls 2000 --seconds 5 --out /tmp/calls.pcap

Ethernet/IPv4/UDP, checksums zero (valid for IPv4 UDP), µs timestamps. Caller i is 10.1.x.y:20000+2k,
callee 10.2.x.y:30000+2k, proxy signalling on port 5060. Calls start staggered over the first second
(so SIP and RTP interleave) and all end at --seconds. Every RTP packet carries 160 bytes of payload.
"""
from __future__ import annotations

import argparse
import struct
from typing import BinaryIO

ETH = bytes.fromhex("020000000002" "020000000001" "0800")
PCAP_HDR = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
REC = struct.Struct("<IIII")
IP_UDP = struct.Struct("!BBHHHBBH4s4sHHHH")


def _ip(net: int, i: int) -> bytes:
    return bytes((10, net, (i >> 8) & 0xFF, i & 0xFF))


def frame(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes) -> bytes:
    ulen = 8 + len(payload)
    hdr = IP_UDP.pack(0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, src, dst, sport, dport, ulen, 0)
    return ETH + hdr + payload


def sdp(ip: bytes, port: int, sess: int) -> bytes:
    a = ".".join(map(str, ip))
    return (f"v=0\r\no=- {sess} 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            f"a=ptime:20\r\na=sendrecv\r\n").encode()


def sip(start: str, call: int, cseq: str, src: bytes, dst: bytes, body: bytes = b"", to_tag: bool = False) -> bytes:
    s = ".".join(map(str, src))
    d = ".".join(map(str, dst))
    h = [start,
         f"Via: SIP/2.0/UDP {s}:5060;branch=z9hG4bK{call}x{cseq.split()[0]}",
         f"From: <sip:a{call}@{s}>;tag=f{call}",
         f"To: <sip:b{call}@{d}>" + (f";tag=t{call}" if to_tag else ""),
         f"Call-ID: call-{call}@bench", f"CSeq: {cseq}", "Max-Forwards: 70",
         f"Contact: <sip:x@{s}:5060>"]
    if body:
        h.append("Content-Type: application/sdp")
    h.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def generate(out: BinaryIO, calls: int, seconds: float, t0: int = 1_700_000_000_000_000) -> int:
    """Write the capture; returns the number of packets."""
    out.write(PCAP_HDR)
    n = 0
    payload = bytes(range(160))
    ptime = 20_000
    starts = [t0 + (i * 1_000_000) // max(1, calls) for i in range(calls)]
    end = t0 + int(seconds * 1_000_000)
    a = [_ip(1, i) for i in range(calls)]
    b = [_ip(2, i) for i in range(calls)]
    ap = [20000 + 2 * (i % 20000) for i in range(calls)]
    bp = [30000 + 2 * (i % 15000) for i in range(calls)]

    def write(ts: int, fr: bytes) -> None:
        nonlocal n
        out.write(REC.pack(ts // 1_000_000, ts % 1_000_000, len(fr), len(fr)))
        out.write(fr)
        n += 1

    seq = [0] * calls
    started = [False] * calls
    # RTP template: V=2, PT=8; seq, ts, ssrc patched per packet.
    rtp_hdr = struct.Struct("!BBHII")
    t = t0
    while t < end:
        for i in range(calls):
            if not started[i]:
                if starts[i] <= t:
                    started[i] = True
                    write(t, frame(a[i], 5060, b[i], 5060, sip(f"INVITE sip:b{i}@{'.'.join(map(str, b[i]))} SIP/2.0",
                                                               i, "1 INVITE", a[i], b[i], sdp(a[i], ap[i], i))))
                    write(t + 50, frame(b[i], 5060, a[i], 5060, sip("SIP/2.0 200 OK", i, "1 INVITE", a[i], b[i],
                                                                     sdp(b[i], bp[i], i), to_tag=True)))
                    write(t + 100, frame(a[i], 5060, b[i], 5060, sip(f"ACK sip:b{i}@x SIP/2.0", i, "1 ACK", a[i], b[i],
                                                                      to_tag=True)))
                continue
            s = seq[i]
            seq[i] = s + 1
            write(t + 200, frame(a[i], ap[i], b[i], bp[i], rtp_hdr.pack(0x80, 8, s & 0xFFFF, (s * 160) & 0xFFFFFFFF,
                                                                         0x10000000 + i) + payload))
            write(t + 300, frame(b[i], bp[i], a[i], ap[i], rtp_hdr.pack(0x80, 8, s & 0xFFFF, (s * 160) & 0xFFFFFFFF,
                                                                         0x20000000 + i) + payload))
        t += ptime
    for i in range(calls):
        if started[i]:
            write(t, frame(a[i], 5060, b[i], 5060, sip(f"BYE sip:b{i}@x SIP/2.0", i, "2 BYE", a[i], b[i], to_tag=True)))
            write(t + 50, frame(b[i], 5060, a[i], 5060, sip("SIP/2.0 200 OK", i, "2 BYE", a[i], b[i], to_tag=True)))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.out, "wb") as f:
        n = generate(f, a.calls, a.seconds)
    print(f"{a.out}: {n} packets, {a.calls} calls, {a.seconds} s")


if __name__ == "__main__":
    main()
