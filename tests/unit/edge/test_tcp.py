"""SIP over TCP reassembly: split, merged, out-of-order, retransmitted, gaps, bounds."""
from __future__ import annotations

import random

from edgefakes import sip_bye, sip_invite

from edge_capture.decode import TCP_FIN, TCP_SYN
from edge_capture.tcp import TcpFlow, TcpReassembler, seq_diff

M1 = sip_invite(call_id="one", pad=500)
M2 = sip_bye(call_id="one")
M3 = sip_invite(call_id="two")
STREAM = M1 + M2 + M3


def _segments(data: bytes, size: int, isn: int = 1000) -> list[tuple[int, bytes]]:
    return [(isn + i, data[i:i + size]) for i in range(0, len(data), size)]


def _feed(flow: TcpFlow, segs, ts: int = 0) -> list[bytes]:
    out = []
    for seq, data in segs:
        out += flow.segment(seq, 0x18, data, ts)
    return out


def test_seq_diff_wraps():
    assert seq_diff(0xFFFFFFF0, 0x10) == 0x20
    assert seq_diff(0x10, 0xFFFFFFF0) == -0x20


def test_several_messages_in_one_segment():
    f = TcpFlow()
    assert f.segment(1, 0x18, STREAM, 0) == [M1, M2, M3]


def test_one_message_over_many_segments():
    for size in (1, 7, 100, 536):
        f = TcpFlow()
        assert _feed(f, _segments(STREAM, size)) == [M1, M2, M3]


def test_out_of_order_and_retransmitted_segments():
    rnd = random.Random(5)
    for _ in range(20):
        segs = _segments(STREAM, 90)
        first, rest = segs[0], segs[1:]
        rest = rest + rnd.sample(rest, k=len(rest) // 3)  # retransmissions
        rnd.shuffle(rest)
        f = TcpFlow()
        assert _feed(f, [first] + rest) == [M1, M2, M3]
        assert not f.errors


def test_overlapping_retransmission_with_more_data():
    f = TcpFlow()
    out = f.segment(1, 0x18, STREAM[:100], 0)
    out += f.segment(51, 0x18, STREAM[50:300], 0)  # overlaps the first 50 bytes it already had
    out += f.segment(301, 0x18, STREAM[300:], 0)
    assert out == [M1, M2, M3]


def test_sequence_wrap_in_the_middle_of_a_message():
    isn = 0xFFFFFFFF - 200
    f = TcpFlow()
    assert _feed(f, _segments(STREAM, 64, isn=isn)) == [M1, M2, M3]


def test_syn_sets_the_start():
    f = TcpFlow()
    assert f.segment(999, TCP_SYN, b"", 0) == []
    assert f.segment(1000, 0x18, M3, 0) == [M3]


def test_gap_resyncs_at_next_message():
    segs = _segments(STREAM, 100)
    lost = len(M1) // 100 // 2  # a segment in the middle of M1
    f = TcpFlow(max_bytes=1 << 20)
    out = _feed(f, [s for i, s in enumerate(segs) if i != lost])
    assert out == []  # waiting for the hole
    out = f.expire_hole(10_000_000, 2_000_000)
    assert out == [M2, M3]
    assert f.gaps == 1


def test_out_of_order_buffer_is_bounded():
    f = TcpFlow(max_bytes=4096)
    f.segment(1, 0x18, b"INVITE", 0)
    big = b"x" * 1000
    for i in range(10):  # far beyond the hole: more than max_bytes buffered -> skip the hole
        f.segment(100 + i * 1000, 0x18, big, 0)
    assert f.ooo_bytes <= 4096
    assert f.gaps >= 1


def test_mid_stream_pickup_resyncs():
    f = TcpFlow()
    out = f.segment(5, 0x18, M1[40:] + M2 + M3, 0)
    assert out == [M2, M3]
    assert f.errors  # the partial first message was skipped and counted


def test_tls_flow_is_ignored():
    f = TcpFlow()
    assert f.segment(1, 0x18, b"\x16\x03\x01\x02\x00" + b"\x00" * 100, 0) == []
    assert f.segment(106, 0x18, M1, 0) == []


def test_reassembler_fin_and_limits():
    r = TcpReassembler(max_flows=2)
    k1 = (b"\x01" * 4, 1, b"\x02" * 4, 5060)
    msgs, errs = r.segment(k1, 1, 0x18, M1[:50], 0)
    assert msgs == [] and errs == []
    msgs, _ = r.segment(k1, 51, 0x18 | TCP_FIN, M1[50:], 0)
    assert msgs == [M1] and k1 not in r.flows
    for i in range(3):
        r.segment((b"\x01" * 4, 10 + i, b"\x02" * 4, 5060), 1, 0x18, b"INV", 0)
    assert len(r.flows) == 2 and r.evicted == 1
    _, dropped = r.expire(10**12)
    assert dropped == 2 and not r.flows
