"""hypothesis: random, truncated and bit-flipped frames for every link type never raise past the pipeline."""
from __future__ import annotations

import struct

from edgefakes import erspan3, eth, gre, ipv4, ipv6, rtp, sip_invite, sll, sll2, tcp, udp, vxlan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_capture.decode import SUPPORTED_LINKTYPES, FrameDecoder
from edge_capture.pipeline import EdgeConfig, EdgePipeline
from edge_capture.sinks import DryRunSink
from spanscribe.protocols.errors import MalformedInput

IP = ipv4("10.0.0.1", "10.0.0.2", 17, udp(5060, 5060, sip_invite()))
SEEDS = [
    (1, eth(IP)), (1, eth(IP, vlans=((0x88A8, 1), (0x8100, 2)))), (113, sll(IP)), (276, sll2(IP)), (101, IP),
    (0, struct.pack("<I", 2) + IP), (108, struct.pack("!I", 2) + IP),
    (1, eth(ipv4("1.1.1.1", "2.2.2.2", 47, erspan3(eth(IP))))),
    (1, eth(ipv4("1.1.1.1", "2.2.2.2", 17, udp(1, 4789, vxlan(eth(IP)))))),
    (1, eth(ipv6("::1", "::2", 44, struct.pack("!BBHI", 17, 0, 1, 9) + udp(5060, 5060, sip_invite())[:64]), 0x86DD)),
    (1, eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(5060, 4000, 1, sip_invite())))),
    (1, eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(40000, 50000, rtp(1, 2, 3))))),
    (1, eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(IP, 0x0800, key=1)))),
]
LINKTYPES = sorted(SUPPORTED_LINKTYPES) + [147, 65535]


def _pipeline() -> EdgePipeline:
    p = EdgePipeline(EdgeConfig(site="f", edge_id="e", rtp_mode="heuristic"), DryRunSink())
    # learn an endpoint so media code paths run too
    p.process(0, 1, eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(5060, 5060, sip_invite(ip="10.0.0.2", port=50000)))))
    return p


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lt=st.sampled_from(LINKTYPES), data=st.binary(max_size=300))
def test_random_bytes(lt, data):
    p = _pipeline()
    p.process(1, lt, data)
    try:
        FrameDecoder().decode(1, lt, data)
    except MalformedInput:
        pass


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 2000),
                                                                                       st.integers(0, 255)), max_size=6))
def test_truncated_and_mutated(seed, cut, flips):
    lt, frame = seed
    b = bytearray(frame[:cut])
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    p = _pipeline()
    p.process(2, lt, bytes(b))
    p.consume(iter([(3, lt, bytes(b)), (200_000, lt, frame)]))
    p.finish()
    s = p.summary()
    assert s["frames"] == 4
