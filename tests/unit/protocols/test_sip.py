"""Hand-written tests for spanscribe.protocols.sip.parse / looks_like_sip."""
from __future__ import annotations

import pytest

from spanscribe.protocols import MalformedInput, Reason, sip

SDP = (
    b"v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP proxy;branch=z9hG4bKsecond\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob, Jr" <sip:bob@example.com>\r\n'
    b'From: "Alice <A;B>" <sip:alice@atlanta.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp; charset=utf-8\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def test_request_fields() -> None:
    m = sip.parse(INVITE)
    assert m.is_request
    assert m.method == "INVITE"
    assert m.request_uri == "sip:bob@example.com"
    assert m.status_code is None and m.reason is None
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert (m.cseq_num, m.cseq_method) == (314159, "INVITE")
    assert m.from_uri == "sip:alice@atlanta.com"
    assert m.from_tag == "1928301774"
    assert m.to_uri == "sip:bob@example.com"
    assert m.to_tag is None
    assert m.via_branch == "z9hG4bK776asdhds"  # the top Via of a comma-joined list
    assert m.content_type == "application/sdp"
    assert m.body == SDP
    assert m.sdp_bodies() == [SDP]
    assert [n for n, _ in m.headers][:3] == ["Via", "Max-Forwards", "To"]


def test_response_fields() -> None:
    raw = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKabc\r\n"
        b"From: <sip:a@x>;tag=aaa\r\nTo: <sip:b@y>;tag=bbb\r\n"
        b"Call-ID: xyz\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    m = sip.parse(raw)
    assert not m.is_request
    assert m.method is None and m.request_uri is None
    assert (m.status_code, m.reason) == (180, "Ringing")
    assert (m.from_tag, m.to_tag) == ("aaa", "bbb")
    assert m.via_branch == "z9hG4bKabc"
    assert m.body == b""
    assert m.sdp_bodies() == []


def test_response_with_multiword_and_empty_reason() -> None:
    base = b"\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
    assert sip.parse(b"SIP/2.0 183 Session Progress" + base).reason == "Session Progress"
    assert sip.parse(b"SIP/2.0 200" + base).reason == ""


def test_compact_headers_expanded() -> None:
    raw = (
        b"INVITE sip:b@y SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h;branch=z9hG4bKc1\r\n"
        b"f: <sip:a@x>;tag=ft\r\nt: sip:b@y\r\ni: cid-compact\r\nm: <sip:a@h>\r\n"
        b"c: application/sdp\r\nk: timer\r\ns: hi\r\ne: identity\r\no: dialog\r\nr: <sip:c@z>\r\n"
        b"b: <sip:d@z>\r\nx: 1800\r\nu: talk\r\na: *;audio\r\nj: *;video\r\nd: proxy\r\ny: abc\r\n"
        b"CSeq: 1 INVITE\r\nl: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
    )
    m = sip.parse(raw)
    names = [n for n, _ in m.headers]
    assert names == [
        "Via", "From", "To", "Call-ID", "Contact", "Content-Type", "Supported", "Subject",
        "Content-Encoding", "Event", "Refer-To", "Referred-By", "Session-Expires", "Allow-Events",
        "Accept-Contact", "Reject-Contact", "Request-Disposition", "Identity", "CSeq", "Content-Length",
    ]
    assert m.call_id == "cid-compact"
    assert m.via_branch == "z9hG4bKc1"
    assert m.from_tag == "ft"
    assert m.to_uri == "sip:b@y"
    assert m.content_type == "application/sdp"
    assert m.sdp_bodies() == [SDP]
    # header() accepts both forms, any case
    assert m.header("i") == m.header("CALL-ID") == "cid-compact"
    assert m.header("L") == str(len(SDP))


def test_header_lookup_and_all() -> None:
    raw = (
        b"OPTIONS sip:x SIP/2.0\r\nRecord-Route: <sip:p1;lr>\r\ncall-id: 1\r\nCSeq: 1 OPTIONS\r\n"
        b"record-route: <sip:p2;lr>\r\nX-Custom-Thing: yes\r\n\r\n"
    )
    m = sip.parse(raw)
    assert m.header_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert m.header("record-ROUTE") == "<sip:p1;lr>"
    assert ("Call-ID", "1") in m.headers  # canonical spelling restored
    assert m.header("x-custom-thing") == "yes"
    assert ("X-Custom-Thing", "yes") in m.headers  # unknown names kept as written
    assert m.header("Subject") is None
    assert m.header_all("Subject") == []


def test_folded_header_and_whitespace_before_colon() -> None:
    raw = (
        b"MESSAGE sip:x SIP/2.0\r\nSubject: I know you're there,\r\n   pick up the phone\r\n"
        b"Call-ID  : spaced\r\nCSeq: 9 MESSAGE\r\n\r\n"
    )
    m = sip.parse(raw)
    assert m.header("Subject") == "I know you're there, pick up the phone"
    assert m.call_id == "spaced"


def test_lf_only_line_ends() -> None:
    raw = INVITE.replace(b"\r\n", b"\n")
    # Content-Length counted CRLF bytes; recompute for the LF-only body.
    body = SDP.replace(b"\r\n", b"\n")
    raw = raw.replace(b"Content-Length: " + str(len(SDP)).encode(), b"Content-Length: " + str(len(body)).encode())
    m = sip.parse(raw)
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert m.body == body


def test_method_upper_cased_and_cseq_method_upper() -> None:
    m = sip.parse(b"invite sip:x SIP/2.0\r\nCSeq: 3 invite\r\n\r\n")
    assert m.method == "INVITE"
    assert m.cseq_method == "INVITE"


def test_body_cut_to_content_length() -> None:
    raw = b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
    assert sip.parse(raw).body == b"hello"


def test_body_without_content_length_is_rest() -> None:
    raw = b"MESSAGE sip:x SIP/2.0\r\nContent-Type: text/plain\r\n\r\nhello"
    assert sip.parse(raw).body == b"hello"


def test_datagram_without_final_empty_line() -> None:
    # Zoiper sends datagrams that end after the last header (sip-t38-reinvite-digium.pcap).
    m = sip.parse(b"ACK sip:x SIP/2.0\r\nCall-ID: z\r\nCSeq: 1 ACK\r\nContent-Length: 0")
    assert (m.method, m.call_id, m.body) == ("ACK", "z", b"")


def test_junk_before_request_line() -> None:
    # Same shape as sip-junk-before-request.pcap (Zeek test): "DB" glued before REGISTER.
    raw = b"DBREGISTER sip:1.1.1.1:5060 SIP/2.0\r\nExpires: 3600\r\n\r\n"
    assert sip.looks_like_sip(raw)
    m = sip.parse(raw)
    assert m.method == "REGISTER"
    assert m.request_uri == "sip:1.1.1.1:5060"


def test_utf8_and_invalid_bytes_in_headers() -> None:
    raw = "MESSAGE sip:x SIP/2.0\r\nSubject: caf\u00e9\r\nCSeq: 1 MESSAGE\r\n\r\n".encode()
    assert sip.parse(raw).header("Subject") == "caf\u00e9"
    raw2 = b"MESSAGE sip:x SIP/2.0\r\nSubject: \xff\xfe\r\nCSeq: 1 MESSAGE\r\n\r\n"
    assert sip.parse(raw2).header("Subject") == "\ufffd\ufffd"


def test_addr_spec_without_brackets_params_are_header_params() -> None:
    m = sip.parse(b"BYE sip:x SIP/2.0\r\nFrom: sip:a@x;tag=t1\r\nTo: sip:b@y\r\nCSeq: 1 BYE\r\n\r\n")
    assert (m.from_uri, m.from_tag) == ("sip:a@x", "t1")


def test_uri_params_inside_brackets_are_not_tags() -> None:
    m = sip.parse(b"BYE sip:x SIP/2.0\r\nFrom: <sip:a@x;tag=uriparam>;tag=real\r\nCSeq: 1 BYE\r\n\r\n")
    assert m.from_uri == "sip:a@x;tag=uriparam"
    assert m.from_tag == "real"


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"", Reason.NOT_SIP, "empty"),
        (b"\r\n\r\n", Reason.NOT_SIP, "empty"),
        (b"HELLO WORLD\r\n\r\n", Reason.BAD_START_LINE, "start line"),
        (b"INVITE sip:x SIP/3.0\r\n\r\n", Reason.BAD_VERSION, "version"),
        (b"SIP/1.0 200 OK\r\n\r\n", Reason.BAD_VERSION, "version"),
        (b"SIP/2.0 099 Low\r\n\r\n", Reason.BAD_START_LINE, "status code"),
        (b"SIP/2.0 700 High\r\n\r\n", Reason.BAD_START_LINE, "status code"),
        (b"INVITE sip:x SIP/2.0\r\nNoColonHere\r\n\r\n", Reason.BAD_HEADER, "header line"),
        (b"INVITE sip:x SIP/2.0\r\n folded-first\r\n\r\n", Reason.BAD_HEADER, "continuation"),
        (b"INVITE sip:x SIP/2.0\r\nCSeq: abc INVITE\r\n\r\n", Reason.BAD_HEADER, "CSeq"),
        (b"INVITE sip:x SIP/2.0\r\nCSeq: 1\r\n\r\n", Reason.BAD_HEADER, "CSeq"),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: ten\r\n\r\n", Reason.BAD_CONTENT_LENGTH, "Content-Length"),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n", Reason.BAD_CONTENT_LENGTH, "Content-Length"),
        (b"INVITE sip:x SIP/2.0\r\nl: \xd9\xa3\r\n\r\n", Reason.BAD_CONTENT_LENGTH, "Content-Length"),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
         Reason.BAD_CONTENT_LENGTH, "Content-Length"),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab", Reason.BAD_CONTENT_LENGTH, "conflicting"),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nshort", Reason.TRUNCATED, "Content-Length"),
    ],
)
def test_malformed(raw: bytes, reason: Reason, field: str) -> None:
    with pytest.raises(MalformedInput) as ei:
        sip.parse(raw)
    assert ei.value.reason is reason
    assert field in str(ei.value)
    assert str(ei.value).startswith("SIP:")


def test_same_content_length_twice_is_fine() -> None:
    m = sip.parse(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nab")
    assert m.body == b"ab"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"INVITE sip:a@b SIP/2.0\r\n", True),
        (b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n", True),
        (b"SIP/2.0 200 OK\r\n", True),
        (b"SIP/2.0 100\r\n", True),
        (b"SIP/2.0 200 OK", False),  # no line end yet: cannot tell
        (b"HTTP/1.1 200 OK\r\n", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"INVITE sip:a@b SIP/3.0\r\n", False),
        (b"\x80\x00\x01\x02" + bytes(20), False),
        (b"", False),
    ],
)
def test_looks_like_sip(data: bytes, expected: bool) -> None:
    assert sip.looks_like_sip(data) is expected


def _multipart(boundary: str, parts: list[tuple[str, bytes]], preamble: bytes = b"") -> bytes:
    out = preamble
    for ctype, body in parts:
        out += b"--" + boundary.encode() + b"\r\nContent-Type: " + ctype.encode() + b"\r\n\r\n" + body + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def test_multipart_mixed_yields_sdp_part() -> None:
    isup = b"\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x33"
    body = _multipart("unique-boundary-1", [("application/sdp", SDP), ("application/ISUP;version=itu-t92+", isup)],
                      preamble=b"This is a preamble\r\n")
    raw = sip.build_message(
        "INVITE sip:b@y SIP/2.0",
        [("Call-ID", "mp"), ("CSeq", "1 INVITE"),
         ("Content-Type", 'multipart/mixed;boundary="unique-boundary-1"')],
        body,
    )
    m = sip.parse(raw)
    assert m.content_type == "multipart/mixed"
    assert m.sdp_bodies() == [SDP]


def test_multipart_sdp_not_first_and_compact_content_type() -> None:
    body = _multipart("b0", [("text/plain", b"hello"), ("Application/SDP", SDP)])
    raw = sip.build_message("INVITE sip:b@y SIP/2.0", [("c", "multipart/mixed; boundary=b0")], body)
    assert sip.parse(raw).sdp_bodies() == [SDP]


def test_multipart_nested_alternative() -> None:
    inner = _multipart("in", [("application/sdp", SDP)])
    outer = _multipart("out", [("multipart/alternative; boundary=in", inner), ("text/plain", b"x")])
    raw = sip.build_message("INVITE sip:b@y SIP/2.0", [("Content-Type", "multipart/mixed; boundary=out")], outer)
    assert sip.parse(raw).sdp_bodies() == [SDP]


def test_multipart_without_boundary_or_sdp_gives_nothing() -> None:
    raw = sip.build_message("INVITE sip:b@y SIP/2.0", [("Content-Type", "multipart/mixed")], b"--x\r\n\r\nv=0\r\n--x--")
    assert sip.parse(raw).sdp_bodies() == []
    body = _multipart("b1", [("text/plain", b"v=0")])
    raw2 = sip.build_message("INVITE sip:b@y SIP/2.0", [("Content-Type", "multipart/mixed; boundary=b1")], body)
    assert sip.parse(raw2).sdp_bodies() == []


def test_non_sdp_body_gives_no_sdp() -> None:
    raw = sip.build_message("INFO sip:b@y SIP/2.0", [("Content-Type", "application/dtmf-relay")], b"Signal=5\r\n")
    m = sip.parse(raw)
    assert m.content_type == "application/dtmf-relay"
    assert m.sdp_bodies() == []


def test_build_message_round_trip() -> None:
    raw = sip.build_message(
        "SIP/2.0 200 OK",
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"), ("To", "<sip:b@y>;tag=2"), ("Call-ID", "rt")],
        SDP,
    )
    m = sip.parse(raw)
    assert m.status_code == 200
    assert m.header("Content-Length") == str(len(SDP))
    assert m.body == SDP
    assert m.to_tag == "2"


def test_canonical_header_name() -> None:
    assert sip.canonical_header_name("cseq") == "CSeq"
    assert sip.canonical_header_name("WWW-AUTHENTICATE") == "WWW-Authenticate"
    assert sip.canonical_header_name("v") == "Via"
    assert sip.canonical_header_name(" X-Foo ") == "X-Foo"
