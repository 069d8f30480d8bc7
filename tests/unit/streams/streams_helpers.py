"""Test helpers: hand-built SIP messages, pcap reading (Ethernet/IPv4/UDP with dpkt), RtpBatch dicts."""
from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt

from schemas.rtp_columns import pack_stream
from spanscribe.protocols import sip as sipmod

SITE = "s1"


def sdp(ip: str, port: int, pts: Sequence[int] = (0, 101), direction: str | None = None,
        proto: str = "RTP/AVP", rtpmaps: Sequence[str] = ("0 PCMU/8000", "101 telephone-event/8000"),
        extra: Sequence[str] = ()) -> bytes:
    lines = ["v=0", f"o=- 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0",
             f"m=audio {port} {proto} " + " ".join(str(p) for p in pts)]
    lines += [f"a=rtpmap:{r}" for r in rtpmaps]
    if direction:
        lines.append(f"a={direction}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n").encode()


def sip_raw(start: str, call_id: str, cseq: str, from_tag: str = "ft1", to_tag: str | None = None,
            body: bytes = b"", from_uri: str = "sip:alice@pbx.example", to_uri: str = "sip:bob@pbx.example") -> bytes:
    to = f"<{to_uri}>" + (f";tag={to_tag}" if to_tag else "")
    hdrs = [start, "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", f"From: <{from_uri}>;tag={from_tag}",
            f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq}", "Max-Forwards: 70"]
    if body:
        hdrs.append("Content-Type: application/sdp")
    hdrs.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body


def sip_record(raw: bytes, ts_us: int, site: str = SITE, src: tuple[str, int] = ("10.0.0.1", 5060),
               dst: tuple[str, int] = ("10.0.0.2", 5060), seq: int = 0) -> dict[str, Any]:
    """A SipMessage Avro dict around raw bytes (parsed fields filled by the shared parser)."""
    m = sipmod.parse(raw)
    return {
        "site": site, "edge_id": "edge1", "edge_seq": seq, "edge_start_us": 0, "capture_ts_us": ts_us,
        "transport": "udp", "src_ip": src[0], "src_port": src[1], "dst_ip": dst[0], "dst_port": dst[1],
        "raw": raw, "call_id": m.call_id or "", "is_request": m.is_request, "method": m.method,
        "status_code": m.status_code, "cseq_num": m.cseq_num, "cseq_method": m.cseq_method,
        "from_tag": m.from_tag, "to_tag": m.to_tag, "sdp_media": [],
    }


@dataclass(frozen=True)
class Udp:
    ts_us: int
    src: str
    sport: int
    dst: str
    dport: int
    data: bytes


def read_udp(path: Path) -> Iterator[Udp]:
    """UDP datagrams of an Ethernet (optionally 802.1Q) / IPv4 pcap or pcapng, capture order."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        reader: Any = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        for ts, buf in reader:
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except dpkt.UnpackError:
                continue
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            if ip.mf or ip.offset:  # fragments: not needed for the captures used here
                continue
            udp = ip.data
            yield Udp(int(round(float(ts) * 1e6)), dpkt.utils.inet_to_str(ip.src), udp.sport,
                      dpkt.utils.inet_to_str(ip.dst), udp.dport, bytes(udp.data))


def sip_records(path: Path, site: str = SITE) -> list[dict[str, Any]]:
    out = []
    for i, u in enumerate(read_udp(path)):
        if sipmod.looks_like_sip(u.data):
            try:
                out.append(sip_record(u.data, u.ts_us, site, (u.src, u.sport), (u.dst, u.dport), i))
            except Exception:  # noqa: BLE001 - a capture may hold junk; the dialog tests only need calls
                continue
    return out


@dataclass
class RtpPkt:
    ts_us: int
    src: str
    sport: int
    dst: str
    dport: int
    ssrc: int
    seq: int
    rtp_ts: int
    pt: int
    marker: bool
    payload: bytes


def rtp_packets(path: Path, ports: set[int] | None = None) -> list[RtpPkt]:
    """RTP-shaped UDP (version 2, not RTCP, not SIP) of a capture; optional destination port filter."""
    out = []
    for u in read_udp(path):
        d = u.data
        if len(d) < 12 or d[0] >> 6 != 2 or 72 <= (d[1] & 0x7F) <= 76 or u.dport in (5060, 5061):
            continue
        if ports is not None and u.dport not in ports:
            continue
        cc = d[0] & 0x0F
        off = 12 + 4 * cc
        if d[0] & 0x10:
            if len(d) < off + 4:
                continue
            off += 4 + 4 * struct.unpack_from("!H", d, off + 2)[0]
        end = len(d)
        if d[0] & 0x20 and end > off:
            end -= d[-1]
        if end < off:
            continue
        seq, ts, ssrc = struct.unpack_from("!HII", d, 2)
        out.append(RtpPkt(u.ts_us, u.src, u.sport, u.dst, u.dport, ssrc, seq, ts, d[1] & 0x7F,
                          bool(d[1] & 0x80), d[off:end]))
    return out


def entry(pkts: Sequence[RtpPkt], site: str = SITE) -> dict[str, Any]:
    p0 = pkts[0]
    return pack_stream(stream_key=f"{site}/{p0.dst}/{p0.dport}", src_ip=p0.src, src_port=p0.sport,
                       dst_ip=p0.dst, dst_port=p0.dport, ssrc=p0.ssrc, seq=[p.seq for p in pkts],
                       rtp_ts=[p.rtp_ts for p in pkts], capture_us=[p.ts_us for p in pkts],
                       payload_type=[p.pt for p in pkts], marker=[p.marker for p in pkts],
                       payloads=[p.payload for p in pkts])


def batches(pkts: Sequence[RtpPkt], site: str = SITE, flush_us: int = 100_000) -> list[dict[str, Any]]:
    """Cut packets into RtpBatch dicts per flush interval, one entry per (dst, ssrc) stream."""
    if not pkts:
        return []
    out: list[dict[str, Any]] = []
    t0 = pkts[0].ts_us
    cur: dict[tuple[str, int, int], list[RtpPkt]] = {}
    window = 0
    seqno = 0

    def flush(end_us: int) -> None:
        nonlocal seqno
        if cur:
            out.append({"site": site, "edge_id": "edge1", "edge_start_us": t0, "batch_seq": seqno,
                        "flush_ts_us": end_us, "streams": [entry(v, site) for v in cur.values()]})
            seqno += 1
            cur.clear()

    for p in pkts:
        w = (p.ts_us - t0) // flush_us
        if w != window:
            flush(t0 + window * flush_us + flush_us)
            window = w
        cur.setdefault((p.dst, p.dport, p.ssrc), []).append(p)
    flush(t0 + window * flush_us + flush_us)
    return out


def synth_entry(key_ip: str, key_port: int, seqs: Sequence[int], ts: Sequence[int], cap: Sequence[int],
                payloads: Sequence[bytes], pts: Sequence[int] | None = None, ssrc: int = 0x1234,
                site: str = SITE, src: tuple[str, int] = ("10.9.9.9", 4000)) -> dict[str, Any]:
    n = len(seqs)
    return pack_stream(stream_key=f"{site}/{key_ip}/{key_port}", src_ip=src[0], src_port=src[1],
                       dst_ip=key_ip, dst_port=key_port, ssrc=ssrc, seq=seqs, rtp_ts=ts, capture_us=cap,
                       payload_type=list(pts) if pts is not None else [0] * n, marker=[False] * n,
                       payloads=payloads)


def batch(streams: Sequence[dict[str, Any]], flush_ts_us: int, site: str = SITE, seq: int = 0) -> dict[str, Any]:
    return {"site": site, "edge_id": "edge1", "edge_start_us": 0, "batch_seq": seq,
            "flush_ts_us": flush_ts_us, "streams": list(streams)}


def avro_roundtrip(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Encode with the project's Avro codec (strict schema check) and decode again."""
    from schemas.codec import AvroCodec

    c = AvroCodec(name)
    return c.decode(c.encode(record))
