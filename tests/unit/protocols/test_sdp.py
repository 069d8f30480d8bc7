"""Hand-written tests for spanscribe.protocols.sdp.parse."""
from __future__ import annotations

import pytest

from spanscribe.protocols import MalformedInput, Reason, sdp
from spanscribe.protocols.sdp import RtpMap


def _sdp(*lines: str, eol: str = "\r\n") -> bytes:
    return (eol.join(lines) + eol).encode()


BASIC = _sdp(
    "v=0",
    "o=- 8000 8001 IN IP4 192.0.2.10",
    "s=call",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 18 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
)


def test_basic_offer() -> None:
    s = sdp.parse(BASIC)
    assert s.origin == "- 8000 8001 IN IP4 192.0.2.10"
    assert s.session_version == 8001
    assert s.connection == "192.0.2.10"
    (m,) = s.media
    assert s.audio() == [m]
    assert (m.media, m.port, m.port_count, m.proto) == ("audio", 49170, 1, "RTP/AVP")
    assert m.payload_types == (0, 8, 18, 101)
    assert m.connection == "192.0.2.10"
    assert m.rtpmap == {
        0: RtpMap(0, "PCMU", 8000, 1),
        8: RtpMap(8, "PCMA", 8000, 1),
        18: RtpMap(18, "G729", 8000, 1),
        101: RtpMap(101, "telephone-event", 8000, 1),
    }
    assert m.fmtp == {101: "0-16"}
    assert m.ptime_ms == 20
    assert m.direction == "sendrecv"
    assert m.rtcp_port is None and not m.rtcp_mux
    assert not m.crypto and not m.encrypted


def test_lf_only_line_ends_equal_crlf() -> None:
    assert sdp.parse(BASIC.replace(b"\r\n", b"\n")) == sdp.parse(BASIC)


def test_media_level_connection_overrides_session_level() -> None:
    s = sdp.parse(_sdp(
        "v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
        "m=audio 1000 RTP/AVP 0", "c=IN IP4 10.0.0.2",
        "m=audio 2000 RTP/AVP 8",
        "m=video 3000 RTP/AVP 31", "c=IN IP6 2001:db8::1",
    ))
    assert [m.connection for m in s.media] == ["10.0.0.2", "10.0.0.1", "2001:db8::1"]
    assert s.connection == "10.0.0.1"
    assert [m.port for m in s.audio()] == [1000, 2000]
    assert s.media[2].rtpmap == {31: RtpMap(31, "H261", 90000, 1)}


def test_no_connection_anywhere_is_none() -> None:
    s = sdp.parse(_sdp("v=0", "s=-", "m=audio 1000 RTP/AVP 0"))
    assert s.connection is None and s.media[0].connection is None
    assert s.origin is None and s.session_version is None


def test_multicast_connection_ttl_stripped() -> None:
    s = sdp.parse(_sdp("v=0", "c=IN IP4 224.2.36.42/127/3", "m=audio 5000/2 RTP/AVP 0"))
    assert s.connection == "224.2.36.42"
    assert (s.media[0].port, s.media[0].port_count) == (5000, 2)


@pytest.mark.parametrize("direction", ["sendonly", "recvonly", "inactive", "sendrecv"])
def test_media_direction(direction: str) -> None:
    s = sdp.parse(_sdp("v=0", "m=audio 1 RTP/AVP 0", f"a={direction}"))
    assert s.media[0].direction == direction


def test_session_direction_inherited_and_overridden() -> None:
    s = sdp.parse(_sdp("v=0", "a=sendonly", "m=audio 1 RTP/AVP 0", "m=audio 2 RTP/AVP 0", "a=inactive"))
    assert [m.direction for m in s.media] == ["sendonly", "inactive"]


def test_rtcp_attrs() -> None:
    s = sdp.parse(_sdp("v=0", "m=audio 5000 RTP/AVP 0", "a=rtcp:5003 IN IP4 10.0.0.9", "a=rtcp-mux",
                       "m=audio 6000 RTP/AVP 0", "a=rtcp:bogus"))
    assert (s.media[0].rtcp_port, s.media[0].rtcp_mux) == (5003, True)
    assert (s.media[1].rtcp_port, s.media[1].rtcp_mux) == (None, False)


def test_static_pts_only_when_no_rtpmap_and_case_kept() -> None:
    s = sdp.parse(_sdp("v=0", "m=audio 1 RTP/AVP 0 8 9 3 4 13 10 96", "a=rtpmap:0 pcmu/8000",
                       "a=rtpmap:96 opus/48000/2", "a=rtpmap:97 unused/8000"))
    m = s.media[0]
    assert m.rtpmap[0] == RtpMap(0, "pcmu", 8000, 1)  # explicit wins, written case kept
    assert m.rtpmap[9] == RtpMap(9, "G722", 8000, 1)  # RTP clock 8 kHz (RFC 3551 §4.5.2)
    assert m.rtpmap[3].encoding == "GSM" and m.rtpmap[4].encoding == "G723" and m.rtpmap[13].encoding == "CN"
    assert m.rtpmap[10] == RtpMap(10, "L16", 44100, 2)
    assert m.rtpmap[96] == RtpMap(96, "opus", 48000, 2)
    assert 97 in m.rtpmap  # explicit rtpmap kept even if not listed
    assert m.payload_types == (0, 8, 9, 3, 4, 13, 10, 96)


def test_dynamic_pt_without_rtpmap_has_no_entry() -> None:
    m = sdp.parse(_sdp("v=0", "m=audio 1 RTP/AVP 111")).media[0]
    assert m.payload_types == (111,)
    assert m.rtpmap == {}


def test_non_rtp_media_t38() -> None:
    s = sdp.parse(_sdp("v=0", "c=IN IP4 1.2.3.4", "m=image 4000 udptl t38", "a=T38FaxVersion:0"))
    m = s.media[0]
    assert (m.media, m.proto, m.payload_types, m.rtpmap) == ("image", "udptl", (), {})
    assert s.audio() == []


def test_disabled_stream_port_zero() -> None:
    s = sdp.parse(_sdp("v=0", "m=audio 0 RTP/AVP 0", "m=video 0 RTP/AVP 31"))
    assert [m.port for m in s.media] == [0, 0]


def test_sdes_crypto_and_savp() -> None:
    m = sdp.parse(_sdp("v=0", "m=audio 1 RTP/SAVP 0",
                       "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")).media[0]
    assert m.crypto and m.encrypted


def test_savp_without_crypto_is_encrypted_not_crypto() -> None:
    m = sdp.parse(_sdp("v=0", "m=audio 1 UDP/TLS/RTP/SAVPF 111")).media[0]
    assert not m.crypto and m.encrypted


def test_session_level_fingerprint_marks_all_media() -> None:
    s = sdp.parse(_sdp("v=0", "a=fingerprint:sha-256 AB:CD", "m=audio 1 RTP/AVP 0", "m=video 2 RTP/AVP 31"))
    assert all(m.crypto for m in s.media)


def test_crypto_only_on_media_that_has_it() -> None:
    s = sdp.parse(_sdp("v=0", "m=audio 1 RTP/AVP 0", "a=crypto:1 X inline:k", "m=audio 2 RTP/AVP 0"))
    assert [m.crypto for m in s.media] == [True, False]


def test_malformed_attrs_ignored_and_ptime_float() -> None:
    m = sdp.parse(_sdp("v=0", "m=audio 1 RTP/AVP 0 96", "a=rtpmap:96", "a=rtpmap:x foo/8000", "a=rtpmap:96 opus/abc",
                       "a=fmtp:xx a=b", "a=ptime:20.0", "a=weird")).media[0]
    assert 96 not in m.rtpmap
    assert m.fmtp == {}
    assert m.ptime_ms == 20


def test_non_numeric_fmts_skipped() -> None:
    m = sdp.parse(_sdp("v=0", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel")).media[0]
    assert m.payload_types == ()


def test_trailing_blank_lines_and_whitespace_ok() -> None:
    s = sdp.parse(BASIC + b"\r\n\r\n")
    assert len(s.media) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (b"o=- 1 1 IN IP4 h\r\nv=0\r\n", "v="),
        (b"v=0\r\nthis is not sdp\r\n", "bad line"),
        (b"v=0\r\nm=audio\r\n", "m= line"),
        (b"v=0\r\nm=audio xyz RTP/AVP 0\r\n", "m= port"),
        (b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "m= port"),
        (b"v=0\r\nm=audio 1/x RTP/AVP 0\r\n", "port count"),
        (b"v=0\r\nc=IN IP4\r\n", "c= line"),
        (b"v=0\r\nm=audio " + b"1" * 5000 + b" RTP/AVP 0\r\n", "m= port"),
    ],
)
def test_malformed(body: bytes, field: str) -> None:
    with pytest.raises(MalformedInput) as ei:
        sdp.parse(body)
    assert ei.value.reason is Reason.BAD_SDP
    assert field in str(ei.value)
    assert str(ei.value).startswith("SDP:")


def test_static_table_matches_rfc3551() -> None:
    t = sdp.STATIC_PAYLOAD_TYPES
    assert {pt: (r.encoding, r.clock_rate) for pt, r in t.items() if pt < 20} == {
        0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 5: ("DVI4", 8000), 6: ("DVI4", 16000),
        7: ("LPC", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000), 10: ("L16", 44100), 11: ("L16", 44100),
        12: ("QCELP", 8000), 13: ("CN", 8000), 14: ("MPA", 90000), 15: ("G728", 8000), 16: ("DVI4", 11025),
        17: ("DVI4", 22050), 18: ("G729", 8000),
    }
