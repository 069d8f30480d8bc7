"""Link layers, tunnels and IP fragment reassembly on crafted frames."""
from __future__ import annotations

import struct

import pytest
from edgefakes import (
    erspan2,
    erspan3,
    eth,
    frag6,
    gre,
    ip4,
    ip6,
    ipv4,
    ipv6,
    sip_invite,
    sll,
    sll2,
    tcp,
    udp,
    vxlan,
)

from edge_capture.decode import FragmentReassembler, FrameDecoder
from spanscribe.protocols.errors import MalformedInput, Reason

SIP = sip_invite()
UDP_SIP = udp(5060, 5060, SIP)
IP_SIP = ipv4("10.0.0.1", "10.0.0.2", 17, UDP_SIP)


def _check(dg, src="10.0.0.1", dst="10.0.0.2", payload=SIP):
    assert dg is not None
    proto, s, d, sport, dport, data, _seq, _flags = dg
    assert proto == 17 and sport == 5060 and dport == 5060
    assert s == (ip4(src) if ":" not in src else ip6(src))
    assert d == (ip4(dst) if ":" not in dst else ip6(dst))
    assert bytes(data) == payload


def test_fast_path_ethernet_ipv4_udp():
    _check(FrameDecoder().decode(0, 1, eth(IP_SIP)))


def test_ethernet_padding_is_ignored():
    small = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))
    dg = FrameDecoder().decode(0, 1, eth(small) + b"\0" * 20)
    assert bytes(dg[5]) == b"x"


def test_ipv4_options_take_the_general_path():
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, UDP_SIP, options=b"\x01\x01\x01\x00"))
    _check(FrameDecoder().decode(0, 1, frame))


@pytest.mark.parametrize("vlans", [((0x8100, 100),), ((0x88A8, 10), (0x8100, 20)), ((0x9100, 10), (0x8100, 20)),
                                   ((0x8100, 1), (0x8100, 2), (0x8100, 3))])
def test_vlan_and_qinq(vlans):
    _check(FrameDecoder().decode(0, 1, eth(IP_SIP, vlans=vlans)))


def test_sll_and_sll2():
    _check(FrameDecoder().decode(0, 113, sll(IP_SIP)))
    _check(FrameDecoder().decode(0, 276, sll2(IP_SIP)))
    v6 = ipv6("2001:db8::1", "2001:db8::2", 17, UDP_SIP)
    _check(FrameDecoder().decode(0, 276, sll2(v6, 0x86DD)), "2001:db8::1", "2001:db8::2")


@pytest.mark.parametrize("lt", [101, 12, 14, 228])
def test_raw_ip(lt):
    _check(FrameDecoder().decode(0, lt, IP_SIP))


def test_raw_ipv6_linktype_229():
    v6 = ipv6("2001:db8::1", "2001:db8::2", 17, UDP_SIP)
    _check(FrameDecoder().decode(0, 229, v6), "2001:db8::1", "2001:db8::2")


def test_bsd_loopback_null_and_loop():
    _check(FrameDecoder().decode(0, 0, struct.pack("<I", 2) + IP_SIP))
    _check(FrameDecoder().decode(0, 108, struct.pack("!I", 2) + IP_SIP))
    v6 = ipv6("::1", "::1", 17, UDP_SIP)
    for fam in (24, 28, 30):
        _check(FrameDecoder().decode(0, 0, struct.pack("<I", fam) + v6), "::1", "::1")


def test_gre_ipv4_and_transparent_ethernet_bridging():
    outer = lambda inner: eth(ipv4("192.0.2.1", "192.0.2.2", 47, inner))  # noqa: E731
    _check(FrameDecoder().decode(0, 1, outer(gre(IP_SIP, 0x0800))))
    _check(FrameDecoder().decode(0, 1, outer(gre(eth(IP_SIP), 0x6558, key=7))))


def test_erspan_type1_2_3():
    outer = lambda inner: eth(ipv4("192.0.2.1", "192.0.2.2", 47, inner))  # noqa: E731
    _check(FrameDecoder().decode(0, 1, outer(erspan2(eth(IP_SIP)))))
    _check(FrameDecoder().decode(0, 1, outer(erspan3(eth(IP_SIP)))))
    _check(FrameDecoder().decode(0, 1, outer(erspan3(eth(IP_SIP), platform=True))))
    _check(FrameDecoder().decode(0, 1, outer(gre(eth(IP_SIP), 0x88BE))))  # type I: no seq, no header


def test_vxlan():
    frame = eth(ipv4("192.0.2.1", "192.0.2.2", 17, udp(33333, 4789, vxlan(eth(IP_SIP)))))
    dec = FrameDecoder()
    _check(dec.decode(0, 1, frame))
    assert dec.tunnels == 1


def test_ip_in_ip_and_6in4():
    _check(FrameDecoder().decode(0, 1, eth(ipv4("192.0.2.1", "192.0.2.2", 4, IP_SIP))))
    v6 = ipv6("2001:db8::1", "2001:db8::2", 17, UDP_SIP)
    _check(FrameDecoder().decode(0, 1, eth(ipv4("192.0.2.1", "192.0.2.2", 41, v6))), "2001:db8::1", "2001:db8::2")
    _check(FrameDecoder().decode(0, 1, eth(ipv6("2001:db8::9", "2001:db8::8", 4, IP_SIP), 0x86DD)))


def test_pppoe_session():
    ppp = struct.pack("!H", 0x0021) + IP_SIP
    pppoe = struct.pack("!BBHH", 0x11, 0, 1, len(ppp)) + ppp
    _check(FrameDecoder().decode(0, 1, eth(pppoe, 0x8864)))


def test_mpls():
    label = struct.pack("!I", (100 << 12) | 0x100 | 64)  # bottom of stack
    _check(FrameDecoder().decode(0, 1, eth(label + IP_SIP, 0x8847)))


def test_ipv6_extension_headers():
    hop = struct.pack("!BB6x", 60, 0)  # hop-by-hop -> destination options
    dst_opts = struct.pack("!BB6x", 17, 0)
    v6 = ipv6("2001:db8::1", "2001:db8::2", 0, hop + dst_opts + UDP_SIP)
    _check(FrameDecoder().decode(0, 1, eth(v6, 0x86DD)), "2001:db8::1", "2001:db8::2")


def test_tcp_fields():
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(5060, 40000, 1000, b"hello", flags=0x18)))
    proto, _s, _d, sport, dport, data, seq, flags = FrameDecoder().decode(0, 1, frame)
    assert (proto, sport, dport, bytes(data), seq, flags) == (6, 5060, 40000, b"hello", 1000, 0x18)


def _frag4(payload: bytes, size: int) -> list[bytes]:
    out = []
    for off in range(0, len(payload), size):
        chunk = payload[off:off + size]
        out.append(eth(ipv4("10.0.0.1", "10.0.0.2", 17, chunk, ident=77, frag_off=off, more=off + size < len(payload))))
    return out


def test_fragmented_invite_ipv4_in_and_out_of_order():
    big = udp(5060, 5060, sip_invite(pad=3000))
    frags = _frag4(big, 1480)
    assert len(frags) == 3
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        dec = FrameDecoder()
        results = [dec.decode(i, 1, frags[i]) for i in order]
        assert results[:2] == [None, None]
        assert bytes(results[2][5]) == sip_invite(pad=3000)
        assert dec.frags.pending == 0 and dec.frags.reassembled == 1


def test_fragment_duplicates_are_ignored():
    big = udp(5060, 5060, sip_invite(pad=2000))
    frags = _frag4(big, 1480)
    dec = FrameDecoder()
    assert dec.decode(0, 1, frags[0]) is None
    assert dec.decode(0, 1, frags[0]) is None
    assert bytes(dec.decode(0, 1, frags[1])[5]) == sip_invite(pad=2000)


def test_fragmented_invite_ipv6():
    big = udp(5060, 5060, sip_invite(pad=3000))
    frags = []
    for off in range(0, len(big), 1232):
        chunk = big[off:off + 1232]
        frags.append(eth(ipv6("2001:db8::1", "2001:db8::2", 44,
                              frag6(17, off, off + 1232 < len(big), 0xABCDEF, chunk)), 0x86DD))
    dec = FrameDecoder()
    out = [dec.decode(0, 1, f) for f in reversed(frags)]
    assert out[-1] is not None and all(o is None for o in out[:-1])
    assert bytes(out[-1][5]) == sip_invite(pad=3000)
    assert out[-1][1] == ip6("2001:db8::1")


def test_fragment_expiry_and_bounds():
    r = FragmentReassembler(max_datagrams=2, timeout_us=1_000_000)
    dec = FrameDecoder(r)
    big = udp(5060, 5060, sip_invite(pad=3000))
    for ident in (1, 2, 3):  # three datagrams, first fragment only: the oldest is evicted
        first = eth(ipv4("10.0.0.1", "10.0.0.2", 17, big[:1480], ident=ident, more=True))
        assert dec.decode(ident, 1, first) is None
    assert r.pending == 2 and r.expired == 1
    assert r.expire(5_000_000) == 2
    assert r.pending == 0 and r.expired == 3 and r.pending_bytes == 0


def test_fragment_overrun_is_malformed():
    dec = FrameDecoder()
    frame = eth(ipv4("10.0.0.1", "10.0.0.2", 17, b"x" * 16, frag_off=65528, more=True))
    with pytest.raises(MalformedInput) as ei:
        dec.decode(0, 1, frame)
    assert ei.value.reason == Reason.BAD_FRAGMENT


@pytest.mark.parametrize("lt", [0, 1, 9, 12, 101, 108, 113, 228, 229, 276])
def test_truncated_frames_raise_only_malformed(lt):
    frames = {1: eth(IP_SIP), 113: sll(IP_SIP), 276: sll2(IP_SIP), 0: struct.pack("<I", 2) + IP_SIP,
              108: struct.pack("!I", 2) + IP_SIP, 9: b"\xff\x03\x00\x21" + IP_SIP}
    full = frames.get(lt, IP_SIP)
    dec = FrameDecoder()
    for n in range(len(full)):
        try:
            dec.decode(0, lt, full[:n])
        except MalformedInput:
            pass


def test_unknown_linktype():
    with pytest.raises(MalformedInput) as ei:
        FrameDecoder().decode(0, 147, b"abc")
    assert ei.value.reason == Reason.UNSUPPORTED


def test_tunnel_depth_is_bounded():
    inner = IP_SIP
    for _ in range(20):
        inner = ipv4("192.0.2.1", "192.0.2.2", 4, inner)
    with pytest.raises(MalformedInput):
        FrameDecoder().decode(0, 101, inner)
