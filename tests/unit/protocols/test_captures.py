"""Real-capture tests: the shared captures, read in place, checked against TShark's counts.

Expected numbers come from ../shared/captures/manifest.tsv (TShark 4.0.17) or from
tests/expected/protocols-tshark.json (tests/expected/derive_protocols_tshark.py), never from our
own output. The pcap reading helper in conftest.py is test scaffolding, not the edge decoder.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dpkt
import pytest

from spanscribe.protocols import MalformedInput, dtmf, sdp, sip
from spanscribe.protocols.rtp import is_rtcp, looks_like_rtp, parse_rtcp, parse_rtp, rtp_fields
from spanscribe.protocols.sip import SipStreamFramer

pytestmark = pytest.mark.capture

EXPECTED = json.loads((Path(__file__).resolve().parents[2] / "expected" / "protocols-tshark.json").read_text())

Datagrams = Callable[[str], list[Any]]  # conftest.Datagram records
Reassemble = Callable[[list[Any]], dict[tuple[str, int, str, int], bytes]]


def _sip_udp(dgrams: list[Any]) -> list[tuple[Any, sip.SipMessage]]:
    out = []
    for d in dgrams:
        if d.proto == "udp" and sip.looks_like_sip(d.payload):
            out.append((d, sip.parse(d.payload)))
    return out


# manifest.tsv column sip_udp (tshark's count of SIP request/status lines over UDP)
SIP_UDP_COUNTS = {
    "sip-rtp-g711.pcap": 10,
    "sip-call-android-g711u.pcap": 19,
    "sip-compact-headers.pcap": 1,
    "sip-codec-change-reinvite.pcap": 10,
    "magicjack-early-media-183.pcap": 11,
    "sip-many-dialogs-aaa.pcap": 81,
    "sip-dtmf-rfc2833-g711a.cap": 29,
    "asterisk-zfone-zrtp.pcap": 27,
    "sip-call-b2bua-g711u.pcap": 48,
    "sip-b2bua-asterisk.pcapng": 60,
    "sip-register-publish-subscribe.pcapng": 60,
    "sip-t38-reinvite-digium.pcap": 19,
    "sip-junk-before-request.pcap": 1,
    "sip-ipv6-udp.pcap": 6,
    "sip-h223-clearmode.pcap.gz": 7,
    "sipp-uac-uas-load.pcapng": 4618,
}


@pytest.mark.parametrize(("name", "count"), sorted(SIP_UDP_COUNTS.items()))
def test_sip_udp_message_count(datagrams: Datagrams, name: str, count: int) -> None:
    # Every datagram that starts like SIP must parse (these captures hold no broken SIP), and
    # the number must equal tshark's.
    msgs = _sip_udp(datagrams(name))
    assert len(msgs) == count


def test_sip_rtp_g711_dialogs_and_sdp(datagrams: Datagrams) -> None:
    msgs = [m for _, m in _sip_udp(datagrams("sip-rtp-g711.pcap"))]
    assert len({m.call_id for m in msgs}) == 2  # manifest sip_dialogs
    # tshark: frames 1/434 INVITE -> 10.0.2.20:6000 recvonly; 4/437 200 -> 10.0.2.15 sendonly ptime 20
    offers = [(m, sdp.parse(b)) for m in msgs for b in m.sdp_bodies()]
    got = [(m.method or m.status_code, s.media[0].connection, s.media[0].port, s.media[0].payload_types,
            s.media[0].direction, s.media[0].ptime_ms) for m, s in offers]
    assert got == [
        ("INVITE", "10.0.2.20", 6000, (0,), "recvonly", None),
        (200, "10.0.2.15", 27942, (0, 101), "sendonly", 20),
        ("INVITE", "10.0.2.20", 6000, (8,), "recvonly", None),
        (200, "10.0.2.15", 28102, (8, 101), "sendonly", 20),
    ]
    answer = offers[1][1].media[0]
    assert answer.rtpmap[0].encoding == "PCMU" and answer.rtpmap[101].encoding == "telephone-event"
    assert answer.fmtp == {101: "0-16"}


def test_magicjack_early_media_183(datagrams: Datagrams) -> None:
    msgs = [m for _, m in _sip_udp(datagrams("magicjack-early-media-183.pcap"))]
    with_sdp = [(m.method or m.status_code, sdp.parse(m.sdp_bodies()[0]).audio()[0]) for m in msgs if m.sdp_bodies()]
    # tshark: INVITE x2 -> 192.168.0.10:49154 (0 8 101 13, ptime 30), 183 and 200 -> 216.234.64.16:54550
    assert [(k, a.connection, a.port) for k, a in with_sdp] == [
        ("INVITE", "192.168.0.10", 49154), ("INVITE", "192.168.0.10", 49154),
        (183, "216.234.64.16", 54550), (200, "216.234.64.16", 54550),
    ]
    assert with_sdp[0][1].payload_types == (0, 8, 101, 13)
    assert with_sdp[0][1].ptime_ms == 30
    assert {pt: r.encoding for pt, r in with_sdp[0][1].rtpmap.items()} == {
        0: "PCMU", 8: "PCMA", 101: "telephone-event", 13: "CN"}
    assert with_sdp[2][1].fmtp == {101: "0-11"}


def test_codec_change_reinvite(datagrams: Datagrams) -> None:
    msgs = [m for _, m in _sip_udp(datagrams("sip-codec-change-reinvite.pcap"))]
    audio = [sdp.parse(m.sdp_bodies()[0]).audio()[0] for m in msgs if m.sdp_bodies()]
    # tshark: offer 0 8 9 -> answer 0; re-INVITE 9 0 -> answer 9, ports 5084 / 5094
    assert [(a.port, a.payload_types) for a in audio] == [(5084, (0, 8, 9)), (5094, (0,)), (5084, (9, 0)), (5094, (9,))]
    assert audio[3].rtpmap[9].encoding == "G722" and audio[3].rtpmap[9].clock_rate == 8000
    assert len({m.call_id for m in msgs}) == 1


def test_srtp_sdes_offers_are_encrypted(datagrams: Datagrams) -> None:
    msgs = [m for _, m in _sip_udp(datagrams("sip-call-srtp-sdes.pcap"))]
    audio = [a for m in msgs for b in m.sdp_bodies() for a in sdp.parse(b).audio()]
    assert audio, "expected SDP offers in the SRTP capture"
    # tshark shows every m= line in this file as RTP/SAVP
    assert all(a.proto == "RTP/SAVP" and a.encrypted for a in audio)
    assert any(a.crypto for a in audio)
    first = audio[0]
    assert (first.connection, first.port, first.rtcp_port) == ("192.168.20.132", 4000, 4001)
    assert first.rtpmap[123].encoding == "opus" and first.rtpmap[123].channels == 2


def test_compact_header_capture(datagrams: Datagrams) -> None:
    ((_, m),) = _sip_udp(datagrams("sip-compact-headers.pcap"))
    assert m.method == "INVITE"
    assert m.call_id == "105090259-446faf7a@192.168.1.2"  # from "Call-ID:"
    assert m.from_tag == "6433ef9"  # from "f:"
    assert m.from_uri == "sip:816666@voip.brurjula.net"
    assert m.to_uri == "sip:97239287044@voip.brujula.net"  # from "t:"
    assert m.via_branch == "z9hG4bKnp104984053-44ce4a41192.168.1.2"  # from "v:"
    assert m.content_type == "application/sdp"  # from "c:"
    assert len(m.body) == 272  # "l: 272" cuts the datagram's body, as tshark does
    s = sdp.parse(m.sdp_bodies()[0])
    # The m= line lies beyond Content-Length; tshark shows the same session with no media.
    assert (s.connection, s.media) == ("192.168.1.2", ())


def test_junk_before_request_capture(datagrams: Datagrams) -> None:
    ((_, m),) = _sip_udp(datagrams("sip-junk-before-request.pcap"))
    assert (m.method, m.request_uri) == ("REGISTER", "sip:1.1.1.1:5060")  # as tshark decodes it


# --- TCP framing ------------------------------------------------------------------------------

# manifest.tsv column sip_tcp
SIP_TCP_COUNTS = {
    "sip-over-tcp-call.pcap": 7,
    "sip-tcp-large-body-null.pcap": 2,
    "sip-tcp-port6060-segmented.pcap": 406,
}


def _frame_all(streams: dict[tuple[str, int, str, int], bytes], step: int | None) -> tuple[list[bytes], int]:
    msgs: list[bytes] = []
    errors = 0
    for data in streams.values():
        f = SipStreamFramer()
        chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
        for chunk in chunks:
            f.feed(chunk)
            while True:
                try:
                    m = f.next_message()
                except MalformedInput:
                    errors += 1
                    continue
                if m is None:
                    break
                msgs.append(m)
        assert f.buffered == 0
    return msgs, errors


@pytest.mark.parametrize(("name", "count"), sorted(SIP_TCP_COUNTS.items()))
def test_tcp_framer_whole_streams(datagrams: Datagrams, reassemble_tcp: Reassemble, name: str, count: int) -> None:
    msgs, errors = _frame_all(reassemble_tcp(datagrams(name)), step=None)
    assert errors == 0
    assert len(msgs) == count
    parsed = [sip.parse(m) for m in msgs]
    assert all(p.call_id for p in parsed)


@pytest.mark.parametrize(("name", "count"), sorted(SIP_TCP_COUNTS.items()))
def test_tcp_framer_one_byte_at_a_time(datagrams: Datagrams, reassemble_tcp: Reassemble, name: str,
                                       count: int) -> None:
    streams = reassemble_tcp(datagrams(name))
    whole, _ = _frame_all(streams, step=None)
    bytewise, errors = _frame_all(streams, step=1)
    assert errors == 0
    assert len(bytewise) == count
    assert bytewise == whole


def test_tcp_call_methods(datagrams: Datagrams, reassemble_tcp: Reassemble) -> None:
    msgs, _ = _frame_all(reassemble_tcp(datagrams("sip-over-tcp-call.pcap")), step=None)
    kinds = sorted(str(p.method or p.status_code) for p in map(sip.parse, msgs))
    # tshark -Y sip on this file: INVITE, 100, 180, 200, ACK, BYE, 200
    assert kinds == sorted(["INVITE", "100", "180", "200", "ACK", "BYE", "200"])


def test_tcp_framer_odd_segments_large_body(datagrams: Datagrams, reassemble_tcp: Reassemble) -> None:
    streams = reassemble_tcp(datagrams("sip-tcp-large-body-null.pcap"))
    whole, _ = _frame_all(streams, step=None)
    for step in (7, 1000):
        assert _frame_all(streams, step=step) == (whole, 0)
    bodies = [sip.parse(m).body for m in whole]
    assert max(len(b) for b in bodies) > 60_000  # the body spans several TCP segments


def test_tcp_framer_with_garbage_between_captured_messages(datagrams: Datagrams, reassemble_tcp: Reassemble) -> None:
    streams = reassemble_tcp(datagrams("sip-over-tcp-call.pcap"))
    whole, _ = _frame_all(streams, step=None)
    noisy = {k: b"\x00\xffgarbage\r\n" + b"\r\n\r\n".join(m for m in whole if m in v) for k, v in streams.items()}
    msgs, errors = _frame_all(noisy, step=3)
    assert sorted(msgs) == sorted(whole)
    assert errors == len(noisy)


# --- RTP / RTCP / DTMF against tshark and dpkt ------------------------------------------------

# manifest.tsv column rtp_packets
RTP_COUNTS = {
    "sip-rtp-g711.pcap": 839,
    "rtp-g711a-only.pcap": 479,
    "sip-over-tcp-call.pcap": 66,
    "rtp-g729-loss.rtp": 244,
    "sip-codec-change-reinvite.pcap": 604,
    "rtp-dtmf-2833-digit-5.pcap": 10,
}


@pytest.mark.parametrize(("name", "count"), sorted(RTP_COUNTS.items()))
def test_rtp_agrees_with_tshark_and_dpkt(datagrams: Datagrams, name: str, count: int) -> None:
    exp = EXPECTED["rtp"][name]
    assert len(exp["frame"]) == count  # the expectations file agrees with the manifest
    by_frame = {d.index: d for d in datagrams(name) if d.proto == "udp"}
    checked = 0
    for i, frame in enumerate(exp["frame"]):
        payload = by_frame[frame].payload
        h = parse_rtp(memoryview(payload))
        assert looks_like_rtp(payload)
        assert (h.payload_type, h.sequence, h.timestamp, h.ssrc, h.marker, len(h.csrcs)) == (
            exp["pt"][i], exp["seq"][i], exp["ts"][i], exp["ssrc"][i], exp["marker"][i], exp["cc"][i])
        assert h.payload_length == exp["payload_len"][i]
        assert rtp_fields(payload) == (h.payload_type, h.marker, h.sequence, h.timestamp, h.ssrc,
                                       h.payload_offset, h.payload_length)
        ref = dpkt.rtp.RTP(payload)
        assert (h.version, h.padding, h.extension, len(h.csrcs)) == (ref.version, bool(ref.p), bool(ref.x), ref.cc)
        assert (h.payload_type, h.sequence, h.timestamp, h.ssrc, h.marker) == (ref.pt, ref.seq, ref.ts, ref.ssrc,
                                                                                bool(ref.m))
        assert not ref.x and not ref.p  # so dpkt's data is exactly our payload
        assert payload[h.payload_offset:h.payload_offset + h.payload_length] == ref.data
        checked += 1
    assert checked == count


def test_rtp_only_capture_count(datagrams: Datagrams) -> None:
    # A file of nothing but RTP: every UDP datagram parses, and there are as many as tshark found.
    udp = [d for d in datagrams("rtp-g711a-only.pcap") if d.proto == "udp"]
    assert sum(1 for d in udp if parse_rtp(d.payload).payload_type == 8) == 479


@pytest.mark.parametrize("name", sorted(EXPECTED["rtcp"]))
def test_rtcp_compound_agrees_with_tshark(datagrams: Datagrams, name: str) -> None:
    by_frame = {d.index: d for d in datagrams(name) if d.proto == "udp"}
    rows = EXPECTED["rtcp"][name]
    assert rows
    for row in rows:
        payload = by_frame[row["frame"]].payload
        assert is_rtcp(payload)
        assert not looks_like_rtp(payload) or payload[1] & 0x7F not in range(72, 77)
        pkts = parse_rtcp(payload)
        assert [p.packet_type for p in pkts] == row["types"]
        assert [p.length_bytes for p in pkts] == row["length_bytes"]


def test_rtcp_compound_sll_ssrcs(datagrams: Datagrams) -> None:
    # tshark: rtcp.senderssrc 0x5d931534 / 0x01932db4 alternate; the SDES chunk carries the same SSRC.
    udp = [d for d in datagrams("rtcp-compound-sll.pcap") if d.proto == "udp"]
    ssrcs = [[p.ssrc for p in parse_rtcp(d.payload)] for d in udp]
    assert ssrcs == [[0x5D931534] * 2, [0x01932DB4] * 2, [0x5D931534] * 2, [0x01932DB4] * 2, [0x5D931534] * 2]


def test_dtmf_agrees_with_tshark(datagrams: Datagrams) -> None:
    name = "rtp-dtmf-2833-digit-5.pcap"
    by_frame = {d.index: d for d in datagrams(name) if d.proto == "udp"}
    rows = EXPECTED["dtmf"][name]
    assert len(rows) == 10
    for row in rows:
        payload = by_frame[row["frame"]].payload
        h = parse_rtp(payload)
        ev = dtmf.parse(payload[h.payload_offset:h.payload_offset + h.payload_length])
        assert (ev.event, ev.end, ev.volume, ev.duration_ticks) == (row["event"], row["end"], row["volume"],
                                                                    row["duration"])
        assert "event" not in repr(ev) and "event" not in str(ev)


# --- every payload of every capture: only MalformedInput ------------------------------------------

# Same location rule as tests/conftest.py (the fixture then skips when the folder is absent).
_CAPTURES_DIR = Path(os.environ.get("SPANSCRIBE_CAPTURES") or Path(__file__).resolve().parents[3].parent / "shared" / "captures")
# protos-c07-sip-r2.cap is NetMon 2 format (manifest file_format), which dpkt cannot read; its
# editcap'd twin protos-c07-sip-r2-as-pcap.pcap holds the same 39 packets and is included.
ALL_CAPTURES = sorted(
    p.name for p in _CAPTURES_DIR.glob("*")
    if (p.suffix in (".pcap", ".pcapng", ".rtp", ".gz") or p.name.endswith(".cap"))
    and p.name != "protos-c07-sip-r2.cap"
) or ["sip-rtp-g711.pcap"]


@pytest.mark.parametrize("name", ALL_CAPTURES)
def test_every_payload_only_malformed(datagrams: Datagrams, name: str) -> None:
    dgrams = datagrams(name)
    for d in dgrams:
        for fn in (sip.parse, parse_rtp, parse_rtcp, dtmf.parse, sdp.parse):
            try:
                fn(d.payload)
            except MalformedInput:
                pass
        try:
            m = sip.parse(d.payload)
        except MalformedInput:
            continue
        for body in m.sdp_bodies():
            try:
                sdp.parse(body)
            except MalformedInput:
                pass
