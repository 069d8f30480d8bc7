"""hypothesis: arbitrary and truncated input raise nothing but MalformedInput; builders round-trip."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanscribe.protocols import MalformedInput, dtmf, sdp, sip
from spanscribe.protocols.rtp import build_rtp, is_rtcp, looks_like_rtp, parse_rtcp, parse_rtp, rtp_fields
from spanscribe.protocols.sip import SipStreamFramer, build_message

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SDP_BODY = (
    b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\na=sendrecv\r\na=rtcp:4001\r\nm=video 0 RTP/SAVP 31\r\na=crypto:1 X inline:k\r\n"
)
INVITE = build_message(
    "INVITE sip:bob@example.com SIP/2.0",
    [("v", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("From", '"A" <sip:a@x>;tag=1'), ("t", "<sip:b@y>"),
     ("i", "cid@h"), ("CSeq", "1 INVITE"), ("Content-Type", "application/sdp")],
    SDP_BODY,
)
RTCP = bytes.fromhex("81c8000c5d931534") + bytes(44) + bytes.fromhex("81ca00065d931534010a") + b"user@host" + bytes(5)


def _only_malformed(fn: object, data: bytes) -> None:
    try:
        fn(data)  # type: ignore[operator]
    except MalformedInput:
        pass


# --- arbitrary bytes --------------------------------------------------------------------------

@SETTINGS
@given(st.binary(max_size=600))
def test_sip_parse_arbitrary(data: bytes) -> None:
    _only_malformed(sip.parse, data)
    sip.looks_like_sip(data)


@SETTINGS
@given(st.binary(max_size=400))
def test_sip_parse_after_valid_start_line(data: bytes) -> None:
    # Get past the start line check so header/body code sees the random bytes.
    try:
        m = sip.parse(b"INVITE sip:x SIP/2.0\r\n" + data)
    except MalformedInput:
        return
    m.sdp_bodies()
    m.header("l")


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["application/sdp", "multipart/mixed; boundary=b",
                                                    'multipart/related;boundary="b"']))
def test_sdp_bodies_never_raise(body: bytes, ctype: str) -> None:
    m = sip.parse(build_message("INVITE sip:x SIP/2.0", [("Content-Type", ctype)], body))
    for part in m.sdp_bodies():
        _only_malformed(sdp.parse, part)


@SETTINGS
@given(st.binary(max_size=400))
def test_sdp_parse_arbitrary(data: bytes) -> None:
    _only_malformed(sdp.parse, data)
    _only_malformed(sdp.parse, b"v=0\r\n" + data)


@SETTINGS
@given(st.lists(st.sampled_from([b"v=0", b"m=audio 1 RTP/AVP 0", b"m=", b"c=IN IP4 1.1.1.1", b"c=IN",
                                 b"a=rtpmap:", b"a=rtpmap:0 ", b"a=rtpmap:96 x/", b"a=fmtp:", b"a=rtcp:",
                                 b"a=ptime:", b"a=ptime:.", b"o=", b"o=a b c", b"a=sendonly", b"m=x 1/ y",
                                 b"\xff=\xfe", b"a=crypto"]), max_size=12),
       st.sampled_from([b"\r\n", b"\n"]))
def test_sdp_parse_structured_garbage(lines: list[bytes], eol: bytes) -> None:
    _only_malformed(sdp.parse, eol.join([b"v=0", *lines]) + eol)


@SETTINGS
@given(st.binary(max_size=200))
def test_rtp_rtcp_dtmf_arbitrary(data: bytes) -> None:
    _only_malformed(parse_rtp, data)
    _only_malformed(parse_rtp, memoryview(data))
    _only_malformed(rtp_fields, data)
    _only_malformed(parse_rtcp, data)
    _only_malformed(dtmf.parse, data)
    looks_like_rtp(data)
    is_rtcp(data)


@SETTINGS
@given(st.binary(min_size=1, max_size=200))
def test_rtp_with_version_2(data: bytes) -> None:
    # Force V=2 so the CSRC/extension/padding paths see random lengths.
    _only_malformed(parse_rtp, bytes([0x80 | (data[0] & 0x3F)]) + data[1:] + bytes(11))
    _only_malformed(parse_rtcp, bytes([0x80 | (data[0] & 0x3F), 200]) + data[1:])


# --- truncations of valid messages ------------------------------------------------------------

@SETTINGS
@given(st.integers(min_value=0, max_value=len(INVITE)))
def test_sip_truncations(n: int) -> None:
    _only_malformed(sip.parse, INVITE[:n])


@SETTINGS
@given(st.integers(min_value=0, max_value=len(SDP_BODY)))
def test_sdp_truncations(n: int) -> None:
    _only_malformed(sdp.parse, SDP_BODY[:n])


@SETTINGS
@given(st.integers(min_value=0, max_value=len(RTCP)))
def test_rtcp_truncations(n: int) -> None:
    _only_malformed(parse_rtcp, RTCP[:n])


@SETTINGS
@given(st.integers(min_value=0, max_value=60))
def test_rtp_truncations(n: int) -> None:
    pkt = build_rtp(payload_type=96, sequence=1, timestamp=2, ssrc=3, csrcs=(4, 5), extension=(1, b"abcd"),
                    payload=b"xyz" * 5, padding=3)
    _only_malformed(parse_rtp, pkt[:n])
    # The tuple fast path accepts and rejects exactly the same inputs.
    try:
        h = parse_rtp(pkt[:n])
    except MalformedInput as e:
        try:
            rtp_fields(pkt[:n])
        except MalformedInput as e2:
            assert str(e2) == str(e)
        else:
            raise AssertionError("rtp_fields accepted what parse_rtp rejected") from None
    else:
        assert rtp_fields(pkt[:n]) == (h.payload_type, h.marker, h.sequence, h.timestamp, h.ssrc,
                                       h.payload_offset, h.payload_length)


# --- the framer -------------------------------------------------------------------------------

@SETTINGS
@given(st.lists(st.one_of(st.binary(max_size=80), st.just(INVITE), st.just(b"\r\n\r\n"),
                          st.just(b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabc")), max_size=8),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_framer_only_messages_or_malformed(chunks: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(chunks)
    f = SipStreamFramer(max_bytes=4096)
    pos = 0
    i = 0
    out: list[bytes] = []
    while pos < len(stream):
        step = sizes[i % len(sizes)]
        f.feed(stream[pos:pos + step])
        pos += step
        i += 1
        for _ in range(1000):
            try:
                m = f.next_message()
            except MalformedInput:
                continue
            if m is None:
                break
            out.append(m)
        else:
            raise AssertionError("framer did not settle")
        assert f.buffered <= 4096 + 50
    # Everything the framer returns starts with a start line.
    assert all(sip.looks_like_sip(m) for m in out)
    # A valid INVITE fed alone after the noise is always recovered intact.
    f.resync()
    f.feed(b"\r\n" + INVITE)
    got: list[bytes] = []
    for _ in range(1000):
        try:
            m = f.next_message()
        except MalformedInput:
            continue
        if m is None:
            break
        got.append(m)
    assert got[-1:] == [INVITE]


@SETTINGS
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_framer_arbitrary_segmentation_yields_same_messages(sizes: list[int]) -> None:
    msgs = [INVITE, build_message("SIP/2.0 200 OK", [("Call-ID", "x"), ("l", "3")], b"abc", content_length=False),
            build_message("ACK sip:x SIP/2.0", [("Call-ID", "y")])]
    stream = b"\r\n".join(msgs)
    f = SipStreamFramer()
    pos = 0
    i = 0
    out: list[bytes] = []
    while pos < len(stream):
        f.feed(stream[pos:pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
        while (m := f.next_message()) is not None:
            out.append(m)
    assert out == msgs


# --- round trips ------------------------------------------------------------------------------

u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@SETTINGS
@given(pt=st.integers(min_value=0, max_value=127), seq=u16, ts=u32, ssrc=u32, marker=st.booleans(),
       csrcs=st.lists(u32, max_size=15).map(tuple), payload=st.binary(max_size=300),
       ext=st.none() | st.tuples(u16, st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])),
       padding=st.integers(min_value=0, max_value=255))
def test_rtp_round_trip(pt: int, seq: int, ts: int, ssrc: int, marker: bool, csrcs: tuple[int, ...],
                        payload: bytes, ext: tuple[int, bytes] | None, padding: int) -> None:
    pkt = build_rtp(payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload, marker=marker,
                    csrcs=csrcs, extension=ext, padding=padding)
    h = parse_rtp(pkt)
    assert (h.version, h.payload_type, h.sequence, h.timestamp, h.ssrc, h.marker) == (2, pt, seq, ts, ssrc, marker)
    assert h.csrcs == csrcs
    assert h.extension is (ext is not None)
    assert h.padding is (padding > 0)
    assert pkt[h.payload_offset:h.payload_offset + h.payload_length] == payload
    assert h.payload_offset + h.payload_length + padding == len(pkt)
    assert rtp_fields(memoryview(pkt)) == (pt, marker, seq, ts, ssrc, h.payload_offset, len(payload))


@SETTINGS
@given(event=st.integers(min_value=0, max_value=255), end=st.booleans(), volume=st.integers(min_value=0, max_value=63),
       duration=u16)
def test_dtmf_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = dtmf.TelephoneEvent(event=event, end=end, volume=volume, duration_ticks=duration)
    assert dtmf.parse(ev.to_bytes()) == ev


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                 min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters=",;\"<>\\"),
                 min_size=1, max_size=20)


@SETTINGS
@given(method=st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "X-CUSTOM"]),
       call_id=_value, cseq=st.integers(min_value=0, max_value=2**31 - 1), from_tag=_token, to_tag=st.none() | _token,
       branch=_token, extra=st.lists(st.tuples(_token.map(lambda t: "X-" + t), _value), max_size=4),
       body=st.binary(max_size=200), compact=st.booleans())
def test_sip_request_round_trip(method: str, call_id: str, cseq: int, from_tag: str, to_tag: str | None, branch: str,
                                extra: list[tuple[str, str]], body: bytes, compact: bool) -> None:
    headers = [
        ("v" if compact else "Via", f"SIP/2.0/UDP host:5060;branch=z9hG4bK{branch}"),
        ("f" if compact else "From", f'"Caller" <sip:alice@a.example>;tag={from_tag}'),
        ("t" if compact else "To", "<sip:bob@b.example>" + (f";tag={to_tag}" if to_tag else "")),
        ("i" if compact else "Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        *extra,
    ]
    if compact:
        headers.append(("l", str(len(body))))
    raw = build_message(f"{method} sip:bob@b.example SIP/2.0", headers, body)
    m = sip.parse(raw)
    assert m.is_request and m.method == method
    assert m.request_uri == "sip:bob@b.example"
    assert m.call_id == call_id
    assert (m.cseq_num, m.cseq_method) == (cseq, method)
    assert (m.from_uri, m.from_tag) == ("sip:alice@a.example", from_tag)
    assert (m.to_uri, m.to_tag) == ("sip:bob@b.example", to_tag)
    assert m.via_branch == f"z9hG4bK{branch}"
    assert m.body == body
    for name, value in extra:
        assert value in m.header_all(name)
    # Re-serialising the parsed headers gives a message that parses to the same thing.
    assert sip.parse(build_message(f"{method} sip:bob@b.example SIP/2.0", list(m.headers), m.body)) == m


@SETTINGS
@given(code=st.integers(min_value=100, max_value=699), reason=st.text(alphabet="abcdefghij XYZ", max_size=20),
       to_tag=_token, body=st.binary(max_size=100))
def test_sip_response_round_trip(code: int, reason: str, to_tag: str, body: bytes) -> None:
    raw = build_message(f"SIP/2.0 {code} {reason}".rstrip(), [("To", f"<sip:b@y>;tag={to_tag}"), ("CSeq", "5 BYE")], body)
    m = sip.parse(raw)
    assert (m.is_request, m.status_code, m.reason) == (False, code, reason.strip())
    assert (m.to_tag, m.cseq_num, m.cseq_method, m.body) == (to_tag, 5, "BYE", body)


@SETTINGS
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(INVITE) - 1), st.integers(min_value=0, max_value=255)),
                min_size=1, max_size=8))
def test_sip_and_sdp_byte_mutations(edits: list[tuple[int, int]]) -> None:
    # Like the fuzzed aaa.pcap capture: a valid message with a few bytes overwritten.
    raw = bytearray(INVITE)
    for pos, value in edits:
        raw[pos] = value
    try:
        m = sip.parse(bytes(raw))
    except MalformedInput:
        return
    for body in m.sdp_bodies():
        _only_malformed(sdp.parse, body)
    f = SipStreamFramer()
    f.feed(bytes(raw))
    for _ in range(100):
        try:
            if f.next_message() is None:
                break
        except MalformedInput:
            continue
