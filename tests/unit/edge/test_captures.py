"""The edge pipeline on the shared real captures, against tshark's counts in manifest.tsv.

manifest.tsv (read in place) holds tshark 4.0's numbers: ``sip_msgs_total`` from ``-z sip,stat`` and
``rtp_packets``/``rtp_streams`` from ``-z rtp,streams`` with ``rtp.heuristic_rtp:TRUE``. Our
``--rtp-mode heuristic`` is the like-for-like comparison for RTP; the default ``--rtp-mode sdp`` forwards
only media announced by SIP/SDP, so it differs on purpose where RTP has no SIP signalling. Each
deliberate difference is listed below with our number and the reason.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from edge_capture.pcapfile import PcapError, open_capture, read_capture, read_pcap_blocks
from edge_capture.pipeline import EdgeConfig, EdgePipeline
from edge_capture.sinks import DryRunSink

pytestmark = pytest.mark.capture

SIP_PORTS = frozenset({5060, 5061, 5080})

# file -> (our SIP message count, why it differs from tshark's sip_msgs_total)
SIP_DIFF = {
    "fuzz-sip-aaa-mutated.pcap": (None, "bit-mutated: tshark and our parser disagree on which mangled messages are SIP"),
    "sip-over-sctp-sll.pcap": (0, "SIP over SCTP is not decoded (no SCTP reassembly at the edge)"),
    "sip-over-websocket-webrtc.pcap": (28, "the 11 SIP-over-WebSocket messages are not decoded; the 28 UDP ones are"),
    "sip-t38-reinvite-digium.pcap": (19, "tshark's sip,stat leaves out the REGISTER it marks malformed "
                                         "(its own sip_udp column says 19); our parser accepts it"),
}
# file -> (our RTP packet count in sdp mode, why)
RTP_SDP_DIFF = {
    "sip-call-g711a-rtcp.pcap": (1439, "3 of the 5 streams are set up by H.323/MGCP, not SIP: no SDP we read"),
    "sip-h263-video-null.pcap": (0, "the only stream is video (m=video): the edge forwards audio only"),
    "fuzz-sip-aaa-mutated.pcap": (None, "bit-mutated"),
}
# file -> (our RTP packet count in heuristic mode, why)
RTP_HEUR_DIFF = {
    "rtp-vlan-h263-dtmf.pcapng": (69, "our heuristic also takes the RTP-shaped packets tshark's heuristic rejects"),
    "sip-call-srtp-sdes.pcap": (4543, "3 RTP-shaped UDP packets outside any stream tshark accepts"),
    "sip-many-dialogs-aaa.pcap": (10, "one RTP-shaped packet tshark's heuristic rejects"),
    "fuzz-sip-aaa-mutated.pcap": (None, "bit-mutated"),
}
UNREADABLE = {"protos-c07-sip-r2.cap": "NetMon 2.x format, not pcap/pcapng (its pcap conversion is tested)"}


def _manifest(captures_dir: Path) -> dict[str, dict[str, str]]:
    with open(captures_dir / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.reader((line for line in f if not line.startswith("#")), delimiter="\t"))
    return {r[0]: dict(zip(rows[0], r, strict=False)) for r in rows[1:]}


def _names() -> list[str]:
    d = Path(__file__).resolve().parents[3].parent / "shared" / "captures"
    if not (d / "manifest.tsv").is_file():
        return ["sip-rtp-g711.pcap"]  # the capture fixture skips
    return sorted(_manifest(d))


def run_file(path: Path, mode: str = "sdp", sip_ports: frozenset[int] = SIP_PORTS, blocks: bool = False) -> dict:
    p = EdgePipeline(EdgeConfig(site="t", edge_id="e", sip_ports=sip_ports, rtp_mode=mode,
                                rtp_ports=(1024, 65535)), DryRunSink())
    with open_capture(str(path)) as f:
        blk = read_pcap_blocks(f) if blocks else None
        if blk is not None:
            p.consume_blocks(blk)
        else:
            p.consume(read_capture(f))
    p.finish()
    return p.summary()


@pytest.mark.parametrize("name", _names())
def test_capture_matches_tshark(name, capture, captures_dir):
    path = capture(name)
    row = _manifest(captures_dir)[name]
    if name in UNREADABLE:
        with pytest.raises(PcapError):
            run_file(path)
        return
    ports = SIP_PORTS | ({6060} if "6060" in row["decode_as"] else set())
    s = run_file(path, "sdp", ports)
    assert run_file(path, "sdp", ports, blocks=True) == s  # the vectorised path agrees frame for frame
    assert run_file(path, "heuristic", ports, blocks=True) == run_file(path, "heuristic", ports)
    want_sip, _ = SIP_DIFF.get(name, (int(row["sip_msgs_total"]), ""))
    if want_sip is not None:
        assert s["sip_messages"] == want_sip
    want_rtp, _ = RTP_SDP_DIFF.get(name, (int(row["rtp_packets"]) if int(row["sip_msgs_total"]) else 0, ""))
    if want_rtp is not None:
        assert s["rtp_packets"] == want_rtp
        if name not in RTP_SDP_DIFF and want_rtp:
            assert len(s["rtp_streams"]) == int(row["rtp_streams"])
    h = run_file(path, "heuristic", ports)
    want_h, _ = RTP_HEUR_DIFF.get(name, (int(row["rtp_packets"]), ""))
    if want_h is not None:
        assert h["rtp_packets"] == want_h
        if name not in RTP_HEUR_DIFF:
            assert len(h["rtp_streams"]) == int(row["rtp_streams"])


def test_tcp_port_6060_needs_the_port(capture):
    """406 SIP messages over TCP port 6060, many split over segments: with --sip-ports 5060,6060."""
    s = run_file(capture("sip-tcp-port6060-segmented.pcap"), sip_ports=frozenset({5060, 6060}))
    assert s["sip_messages"] == 406 and s["sip_tcp"] == 406 and not s["errors"]


def test_fragmented_sip_ipv4_and_ipv6(capture):
    s = run_file(capture("sip-frag-icmp-g722.pcapng"))
    assert s["fragments"]["reassembled"] > 0 and s["fragments"]["pending"] == 0
    assert s["sip_messages"] == 276 and s["rtp_packets"] == 1724
    s = run_file(capture("sip-ipv6-fragmented-sll.pcap"))
    assert s["fragments"]["reassembled"] > 0 and s["sip_messages"] == 32


@pytest.mark.parametrize("name,tunnels", [("sip-gre-eth-mirror.pcapng", True), ("sip-ipip-rawip.pcap", False),
                                          ("sip-tcp-ipip.pcap", True), ("sip-vlan-gre-ppp.pcapng", True)])
def test_tunnelled_sip(name, tunnels, capture, captures_dir):
    s = run_file(capture(name))
    assert s["sip_messages"] == int(_manifest(captures_dir)[name]["sip_msgs_total"])
    assert (s["tunnels"] > 0) == tunnels


@pytest.mark.parametrize("name", ["vlan-qinq.pcap", "erspan-type2-nonsip.pcap", "vxlan-nonsip.pcap",
                                  "linux-sll2-icmpv6.pcap"])
def test_encapsulations_decode_without_errors(name, capture):
    s = run_file(capture(name))
    assert not [k for k in s["errors"] if k.startswith("decode/")], s["errors"]
    if name in ("erspan-type2-nonsip.pcap", "vxlan-nonsip.pcap"):
        assert s["tunnels"] > 0


def test_every_capture_byte_at_a_time_truncation(capture):
    """Every frame of a mixed capture cut at every length: only counted errors, never an exception."""
    p = EdgePipeline(EdgeConfig(site="t", edge_id="e"), DryRunSink())
    with open_capture(str(capture("sip-many-dialogs-aaa.pcap"))) as f:
        frames = [(ts, lt, bytes(fr)) for ts, lt, fr in read_capture(f)][:60]
    for ts, lt, fr in frames:
        for n in range(0, len(fr), 3):
            p.process(ts, lt, fr[:n])
    assert p.stats.frames > 0
