"""Test helpers for the protocol tests: a deliberately simple pcap reader built on dpkt.

Only Ethernet (with 802.1Q), Linux SLL, BSD null and raw-IP links, IPv4/IPv6 and unfragmented UDP or
TCP are decoded here. The real link-layer decoder lives in edge_capture/; this is test scaffolding.
"""
from __future__ import annotations

import gzip
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest


@dataclass(frozen=True)
class Datagram:
    index: int          # 1-based frame number, as tshark counts
    ts: float
    proto: str          # "udp" or "tcp"
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    tcp_seq: int = 0
    tcp_flags: int = 0


def _open(path: Path) -> Iterator[tuple[float, bytes, int]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader: dpkt.pcap.Reader | dpkt.pcapng.Reader
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, buf in reader:
            yield ts, buf, link


def _ip_of(buf: bytes, link: int) -> dpkt.Packet | None:
    if link == dpkt.pcap.DLT_EN10MB:
        eth = dpkt.ethernet.Ethernet(buf)
        return eth.data if isinstance(eth.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else None
    if link == dpkt.pcap.DLT_LINUX_SLL:
        sll = dpkt.sll.SLL(buf)
        return sll.data if isinstance(sll.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else None
    if link in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        family = int.from_bytes(buf[:4], "little") if link == dpkt.pcap.DLT_NULL else int.from_bytes(buf[:4], "big")
        if family == 2:
            return dpkt.ip.IP(buf[4:])
        if family in (24, 28, 30):
            return dpkt.ip6.IP6(buf[4:])
        return None
    if link in (dpkt.pcap.DLT_RAW, 101, 12, 14):
        v = buf[0] >> 4 if buf else 0
        return dpkt.ip.IP(buf) if v == 4 else dpkt.ip6.IP6(buf) if v == 6 else None
    return None


def read_datagrams(path: Path) -> list[Datagram]:
    """Unfragmented UDP and TCP payloads of a capture, in file order."""
    out: list[Datagram] = []
    for i, (ts, buf, link) in enumerate(_open(path), start=1):
        try:
            ip = _ip_of(buf, link)
        except (dpkt.UnpackError, IndexError, ValueError):
            continue
        if ip is None:
            continue
        if isinstance(ip, dpkt.ip.IP):
            if ip.mf or ip.offset:
                continue
            src, dst = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst)
        else:
            src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
        l4 = ip.data
        if isinstance(l4, dpkt.udp.UDP):
            out.append(Datagram(i, ts, "udp", src, l4.sport, dst, l4.dport, bytes(l4.data)))
        elif isinstance(l4, dpkt.tcp.TCP):
            out.append(Datagram(i, ts, "tcp", src, l4.sport, dst, l4.dport, bytes(l4.data), l4.seq, l4.flags))
    return out


@pytest.fixture(scope="session")
def datagrams(capture: Callable[[str], Path]) -> Callable[[str], list[Datagram]]:
    """``datagrams("file.pcap")`` -> the file's UDP/TCP payloads (skips if the capture is absent)."""
    cache: dict[str, list[Datagram]] = {}

    def _get(name: str) -> list[Datagram]:
        if name not in cache:
            cache[name] = read_datagrams(capture(name))
        return cache[name]

    return _get


def tcp_streams(dgrams: list[Datagram]) -> dict[tuple[str, int, str, int], bytes]:
    """Naive TCP reassembly per direction for tests: order by sequence, drop retransmitted bytes.

    Gaps (lost segments) are simply concatenated over; the captures used here have none.
    """
    flows: dict[tuple[str, int, str, int], list[tuple[int, bytes]]] = {}
    for d in dgrams:
        if d.proto == "tcp" and d.payload:
            flows.setdefault((d.src, d.sport, d.dst, d.dport), []).append((d.tcp_seq, d.payload))
    out: dict[tuple[str, int, str, int], bytes] = {}
    for key, segs in flows.items():
        base = segs[0][0]
        ordered = sorted(segs, key=lambda s: (s[0] - base) & 0xFFFFFFFF)
        data = bytearray()
        next_rel = 0
        for seq, payload in ordered:
            rel = (seq - base) & 0xFFFFFFFF
            if rel + len(payload) <= next_rel:
                continue  # pure retransmission
            data += payload[max(0, next_rel - rel):]
            next_rel = rel + len(payload)
        out[key] = bytes(data)
    return out


@pytest.fixture(scope="session")
def reassemble_tcp() -> Callable[[list[Datagram]], dict[tuple[str, int, str, int], bytes]]:
    """The naive per-direction TCP reassembly above, as a fixture (test modules cannot import conftest)."""
    return tcp_streams
