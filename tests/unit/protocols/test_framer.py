"""SipStreamFramer: Content-Length framing of SIP over TCP (RFC 3261 §18.3)."""
from __future__ import annotations

import pytest

from spanscribe.protocols import MalformedInput, Reason, UsageError, sip
from spanscribe.protocols.sip import SipStreamFramer, build_message

SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def _msg(n: int, body: bytes = b"", compact: bool = False) -> bytes:
    headers = [("Via", f"SIP/2.0/TCP h;branch=z9hG4bK{n}"), ("Call-ID", f"call-{n}"), ("CSeq", f"{n} INVITE")]
    if compact:
        headers.append(("l", str(len(body))))
    return build_message(f"INVITE sip:u{n}@h SIP/2.0", headers, body)


def drain(f: SipStreamFramer) -> tuple[list[bytes], list[MalformedInput]]:
    msgs: list[bytes] = []
    errors: list[MalformedInput] = []
    for _ in range(10_000):  # bounded: a framer that never settles fails the test
        try:
            m = f.next_message()
        except MalformedInput as e:
            errors.append(e)
            continue
        if m is None:
            return msgs, errors
        msgs.append(m)
    raise AssertionError("framer did not settle")


STREAM_MSGS = [_msg(1, SDP), _msg(2), _msg(3, SDP, compact=True), build_message("SIP/2.0 200 OK", [("Call-ID", "x")], b"hi")]
STREAM = b"".join(STREAM_MSGS)


def test_several_messages_in_one_segment() -> None:
    f = SipStreamFramer()
    f.feed(STREAM)
    msgs, errors = drain(f)
    assert msgs == STREAM_MSGS
    assert errors == []
    assert f.buffered == 0
    assert [sip.parse(m).call_id for m in msgs] == ["call-1", "call-2", "call-3", "x"]


def test_one_byte_at_a_time() -> None:
    f = SipStreamFramer()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        f.feed(STREAM[i:i + 1])
        msgs, errors = drain(f)
        assert errors == []
        out += msgs
    assert out == STREAM_MSGS


def test_message_not_emitted_before_body_complete() -> None:
    m = _msg(1, SDP)
    f = SipStreamFramer()
    f.feed(m[:-1])
    assert f.next_message() is None
    f.feed(m[-1:])
    assert f.next_message() == m
    assert f.next_message() is None


def test_compact_content_length() -> None:
    m = _msg(3, SDP, compact=True)
    assert b"\r\nl: " in m
    f = SipStreamFramer()
    f.feed(m + m)
    assert drain(f) == ([m, m], [])


def test_crlf_keepalives_skipped() -> None:
    f = SipStreamFramer()
    f.feed(b"\r\n\r\n" + STREAM_MSGS[0] + b"\r\n" + b"\r\n\r\n" + STREAM_MSGS[1] + b"\r\n\r\n")
    msgs, errors = drain(f)
    assert (msgs, errors) == (STREAM_MSGS[:2], [])
    assert f.buffered == 0


def test_missing_content_length_means_empty_body() -> None:
    m = build_message("OPTIONS sip:x SIP/2.0", [("Call-ID", "o")], content_length=False)
    f = SipStreamFramer()
    f.feed(m + STREAM_MSGS[1])
    assert drain(f) == ([m, STREAM_MSGS[1]], [])


def test_resync_after_garbage() -> None:
    f = SipStreamFramer()
    f.feed(b"\x16\x03\x01 binary junk\nmore junk\r\n" + STREAM_MSGS[0] + b"trailing junk\r\n" + STREAM_MSGS[1])
    msgs, errors = drain(f)
    assert msgs == STREAM_MSGS[:2]
    assert [e.reason for e in errors] == [Reason.NOT_SIP, Reason.NOT_SIP]


def test_garbage_without_newline_is_bounded() -> None:
    f = SipStreamFramer()
    f.feed(b"x" * (SipStreamFramer.MAX_START_LINE + 1))
    msgs, errors = drain(f)
    assert msgs == [] and [e.reason for e in errors] == [Reason.NOT_SIP]
    assert f.buffered == 0


def test_bad_content_length_resyncs_to_next_message() -> None:
    bad = b"INVITE sip:x SIP/2.0\r\nCall-ID: bad\r\nContent-Length: lots\r\n\r\n"
    f = SipStreamFramer()
    f.feed(bad + STREAM_MSGS[1])
    msgs, errors = drain(f)
    assert msgs == [STREAM_MSGS[1]]
    assert [e.reason for e in errors] == [Reason.BAD_CONTENT_LENGTH]


def test_too_large_body_raises_and_resyncs() -> None:
    huge = build_message("MESSAGE sip:x SIP/2.0", [("Content-Length", "5000")])
    f = SipStreamFramer(max_bytes=1024)
    f.feed(huge + b"A" * 100 + b"\r\n" + STREAM_MSGS[1])
    msgs, errors = drain(f)
    assert [e.reason for e in errors][0] is Reason.TOO_LARGE
    assert msgs == [STREAM_MSGS[1]]


def test_too_large_header_section() -> None:
    f = SipStreamFramer(max_bytes=256)
    f.feed(b"INVITE sip:x SIP/2.0\r\n" + b"X-Filler: aaaaaaaaaaaaaaaa\r\n" * 20)
    msgs, errors = drain(f)
    assert msgs == [] and [e.reason for e in errors] == [Reason.TOO_LARGE]
    assert f.buffered <= 256


def test_resync_after_gap_drops_partial_message() -> None:
    f = SipStreamFramer()
    f.feed(STREAM_MSGS[0][:50])  # start of a message, then the capture lost a segment
    assert f.next_message() is None
    f.resync()
    f.feed(STREAM_MSGS[0][200:] + STREAM_MSGS[1])
    msgs, errors = drain(f)
    assert STREAM_MSGS[1] in msgs
    assert all(e.reason is Reason.NOT_SIP for e in errors)


def test_resync_finds_start_line_in_buffer() -> None:
    f = SipStreamFramer()
    f.feed(STREAM_MSGS[0][:60] + b"\r\n" + STREAM_MSGS[1])
    f.resync()
    assert drain(f) == ([STREAM_MSGS[1]], [])


def test_status_line_start() -> None:
    m = build_message("SIP/2.0 100 Trying", [("Call-ID", "t")])
    f = SipStreamFramer()
    f.feed(b"junk\r\n" + m)
    msgs, errors = drain(f)
    assert msgs == [m] and len(errors) == 1


def test_max_bytes_must_be_sane() -> None:
    with pytest.raises(UsageError):
        SipStreamFramer(max_bytes=10)
