"""Hand-written tests for spanscribe.protocols.rtp (RTP, RTCP, wrap helpers)."""
from __future__ import annotations

import struct

import pytest

from spanscribe.protocols import MalformedInput, Reason, UsageError, rtp
from spanscribe.protocols.rtp import build_rtp, parse_rtcp, parse_rtp, seq_delta, seq_newer, ts_delta


def test_plain_header_by_hand() -> None:
    # V=2, no P/X/CC; M=1, PT=0; seq 0x1234; ts 0x01020304; ssrc 0xdeadbeef; 3 payload bytes.
    data = bytes.fromhex("8080123401020304deadbeef") + b"abc"
    h = parse_rtp(data)
    assert (h.version, h.padding, h.extension, h.marker) == (2, False, False, True)
    assert (h.payload_type, h.sequence, h.timestamp, h.ssrc) == (0, 0x1234, 0x01020304, 0xDEADBEEF)
    assert h.csrcs == ()
    assert (h.payload_offset, h.payload_length) == (12, 3)


def test_csrc_extension_padding_by_hand() -> None:
    hdr = bytes([0x80 | 0x20 | 0x10 | 2, 96]) + struct.pack("!HII", 7, 160, 42)
    csrcs = struct.pack("!II", 0x11111111, 0x22222222)
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x10\xaa\x00\x00" + b"\x00" * 4
    payload = b"\x01\x02\x03\x04\x05"
    padding = b"\x00\x00\x03"
    h = parse_rtp(hdr + csrcs + ext + payload + padding)
    assert (h.padding, h.extension, h.marker, h.payload_type) == (True, True, False, 96)
    assert h.csrcs == (0x11111111, 0x22222222)
    assert h.payload_offset == 12 + 8 + 4 + 8
    assert h.payload_length == 5


def test_memoryview_and_offset_view() -> None:
    pkt = build_rtp(payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=1, payload=b"x" * 160)
    frame = b"\x00" * 42 + pkt  # as if behind Ethernet/IP/UDP headers
    h = parse_rtp(memoryview(frame)[42:])
    assert (h.sequence, h.timestamp, h.payload_length) == (65535, 2**32 - 1, 160)
    assert h == parse_rtp(pkt)
    assert h == parse_rtp(bytearray(pkt))


def test_empty_payload_is_fine() -> None:
    h = parse_rtp(build_rtp(payload_type=13, sequence=1, timestamp=1, ssrc=1))
    assert h.payload_length == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "truncated fixed header"),
        (bytes.fromhex("8000000100000001000000"), "truncated fixed header"),  # 11 bytes
        (bytes.fromhex("4000000100000001000000010000"), "version"),
        (bytes.fromhex("c000000100000001000000010000"), "version"),
        (bytes.fromhex("8300000100000001000000010000000100000002"), "truncated CSRC list"),  # CC=3, 2 CSRCs
        (bytes.fromhex("9000000100000001000000010000"), "truncated header extension header"),
        (bytes.fromhex("900000010000000100000001beef000300000000"), "truncated header extension"),
        (bytes.fromhex("a0000001000000010000000100"), "bad padding length 0"),
        (bytes.fromhex("a000000100000001000000010209"), "bad padding length 9"),
        (bytes.fromhex("b0000001000000010000000100000000"), "padding bit set but no padding"),
    ],
)
def test_malformed_rtp(data: bytes, field: str) -> None:
    with pytest.raises(MalformedInput) as ei:
        parse_rtp(data)
    assert ei.value.reason is Reason.BAD_RTP
    assert field in str(ei.value)
    assert str(ei.value).startswith("RTP:")


def test_build_rtp_round_trip_all_features() -> None:
    pkt = build_rtp(payload_type=101, sequence=9, timestamp=8000, ssrc=0xCAFEBABE, payload=b"\x05\x0a\x00\xa0",
                    marker=True, csrcs=(1, 2, 3), extension=(0x1000, b"abcdefgh"), padding=4)
    h = parse_rtp(pkt)
    assert (h.payload_type, h.sequence, h.timestamp, h.ssrc, h.marker) == (101, 9, 8000, 0xCAFEBABE, True)
    assert h.csrcs == (1, 2, 3) and h.extension and h.padding
    assert pkt[h.payload_offset:h.payload_offset + h.payload_length] == b"\x05\x0a\x00\xa0"
    assert len(pkt) == h.payload_offset + h.payload_length + 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_type": 128}, {"sequence": 65536}, {"timestamp": -1}, {"ssrc": 2**32},
        {"csrcs": tuple(range(16))}, {"extension": (1, b"abc")}, {"padding": 256},
    ],
)
def test_build_rtp_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    args.update(kwargs)
    with pytest.raises(UsageError):
        build_rtp(**args)  # type: ignore[arg-type]


def test_looks_like_rtp_and_is_rtcp() -> None:
    pkt = build_rtp(payload_type=0, sequence=1, timestamp=1, ssrc=1)
    assert rtp.looks_like_rtp(pkt) and not rtp.is_rtcp(pkt)
    rr = bytes.fromhex("81c90007") + bytes(28)  # RR with 1 report block
    assert rtp.is_rtcp(rr) and not rtp.looks_like_rtp(rr)  # PT byte 201 -> 73 with marker
    assert not rtp.looks_like_rtp(pkt[:11])
    assert not rtp.looks_like_rtp(b"\x40" + pkt[1:])  # version 1
    for pt in (72, 76):
        assert not rtp.looks_like_rtp(build_rtp(payload_type=pt, sequence=1, timestamp=1, ssrc=1))
    for pt in (71, 77):
        assert rtp.looks_like_rtp(build_rtp(payload_type=pt, sequence=1, timestamp=1, ssrc=1))
    assert not rtp.is_rtcp(b"\x80\xc8")  # too short
    assert not rtp.is_rtcp(b"\x80\xe0\x00\x00")  # 224 outside 192..223
    assert rtp.is_rtcp(memoryview(b"\x80\xc0\x00\x00"))


def _sr(ssrc: int, reports: int = 0) -> bytes:
    body = struct.pack("!I", ssrc) + bytes(20) + bytes(24 * reports)
    return bytes([0x80 | reports, 200]) + struct.pack("!H", len(body) // 4) + body


def _sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!I", ssrc) + bytes([1, len(cname)]) + cname + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return bytes([0x81, 202]) + struct.pack("!H", len(chunk) // 4) + chunk


def test_rtcp_compound_walk() -> None:
    bye = bytes([0x80, 203]) + struct.pack("!H", 0)  # BYE with SC=0: header only
    data = _sr(0x5D931534, reports=1) + _sdes(0x5D931534, b"user@host") + bye
    pkts = parse_rtcp(data)
    assert [p.packet_type for p in pkts] == [200, 202, 203]
    assert [p.ssrc for p in pkts] == [0x5D931534, 0x5D931534, None]
    assert [p.length_bytes for p in pkts] == [52, len(_sdes(1, b"user@host")), 4]
    assert sum(p.length_bytes for p in pkts) == len(data)
    assert parse_rtcp(memoryview(data)) == pkts


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "empty"),
        (b"\x80\xc8\x00", "truncated header"),
        (_sr(1) + b"\x80\xca", "truncated header"),
        (b"\x40\xc8\x00\x00", "version"),
        (b"\x80\x00\x00\x00", "packet type"),
        (b"\x80\xe0\x00\x00", "packet type"),
        (b"\x80\xc8\x00\x06" + bytes(20), "truncated packet"),
    ],
)
def test_malformed_rtcp(data: bytes, field: str) -> None:
    with pytest.raises(MalformedInput) as ei:
        parse_rtcp(data)
    assert ei.value.reason is Reason.BAD_RTCP
    assert field in str(ei.value)


@pytest.mark.parametrize(
    ("a", "b", "delta"),
    [
        (0, 1, 1), (1, 0, -1), (65535, 0, 1), (0, 65535, -1), (65500, 10, 46), (10, 65500, -46),
        (0, 32767, 32767), (0, 32768, -32768), (5, 5, 0), (40000, 7232, 32768 - 65536),
    ],
)
def test_seq_delta(a: int, b: int, delta: int) -> None:
    assert seq_delta(a, b) == delta
    assert seq_newer(a, b) is (delta > 0)


@pytest.mark.parametrize(
    ("a", "b", "delta"),
    [
        (0, 160, 160), (160, 0, -160), (2**32 - 80, 80, 160), (80, 2**32 - 80, -160),
        (0, 2**31 - 1, 2**31 - 1), (0, 2**31, -(2**31)), (123456, 123456, 0),
    ],
)
def test_ts_delta(a: int, b: int, delta: int) -> None:
    assert ts_delta(a, b) == delta
