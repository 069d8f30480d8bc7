"""SIP message parsing (RFC 3261) and TCP stream framing, sans-I/O.

``parse(data)`` turns one whole message (a UDP datagram, a reassembled IP packet, or one message cut
out of a TCP stream by :class:`SipStreamFramer`) into a frozen :class:`SipMessage`. Bad bytes raise
:class:`~spanscribe.protocols.errors.MalformedInput` and nothing else.

Header section bytes are decoded as UTF-8 with ``errors="replace"`` (RFC 3261 §7.3.1 allows UTF-8 in
header values; a broken sequence must not kill the capture). The body is kept as raw bytes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import MalformedInput, Reason, UsageError

# SIP/SDP linear white space only: str.strip() would also eat U+0085, U+00A0 etc. from values.
_WS = " \t\r\n"

__all__ = [
    "COMPACT_FORMS",
    "SipMessage",
    "SipStreamFramer",
    "build_message",
    "canonical_header_name",
    "looks_like_sip",
    "parse",
]

#: RFC 3261 §7.3.3 compact forms plus the extension ones registered at IANA.
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

_KNOWN_HEADERS = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
    "Alert-Info", "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
    "Content-Length", "Content-Type", "CSeq", "Date", "Diversion", "Error-Info", "Event", "Expires",
    "From", "History-Info", "Identity", "In-Reply-To", "Join", "Max-Forwards", "MIME-Version",
    "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity", "P-Called-Party-ID",
    "P-Charging-Vector", "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To",
    "Referred-By", "Reject-Contact", "Remote-Party-ID", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Resource-Priority", "Retry-After", "Route", "RSeq", "Security-Client",
    "Security-Server", "Security-Verify", "Server", "Service-Route", "Session-Expires", "SIP-ETag",
    "SIP-If-Match", "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
    "User-Agent", "Via", "Warning", "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {h.lower(): h for h in _KNOWN_HEADERS}
for _short, _long in COMPACT_FORMS.items():
    _CANONICAL[_short] = _long

#: Methods we accept when junk precedes the request line on the same line (Zeek's junk test).
_KNOWN_METHODS = (
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
)

# RFC 3261 §25.1 token characters.
_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") +([^ \r\n]+) +(SIP/[0-9]+\.[0-9]+) *\r?$", re.IGNORECASE)
_STATUS_LINE = re.compile(rb"(SIP/[0-9]+\.[0-9]+) +([0-9]{3})(?: +([^\r\n]*))?\r?$", re.IGNORECASE)
_JUNK_REQUEST = re.compile(
    rb"(?:" + "|".join(_KNOWN_METHODS).encode() + rb") +[^ \r\n]+ +SIP/2\.0 *\r?$"
)
_JUNK_STATUS = re.compile(rb"SIP/2\.0 +[0-9]{3}(?: [^\r\n]*)?\r?$")
# A start line at the beginning of a line (used for stream resync).
_START_AT_LINE = re.compile(
    rb"(?:^|\n)(" + _TOKEN + rb" +[^ \r\n]+ +SIP/2\.0 *\r?\n|SIP/2\.0 +[0-9]{3}[ \r\n])", re.IGNORECASE
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_TOKEN_STR = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")

_MAX_DIGITS = 10  # no SIP number (Content-Length, CSeq) needs more; int() of huge strings is slow


def canonical_header_name(name: str) -> str:
    """Return the canonical long spelling of a header name (compact forms expanded).

    Known headers get their RFC spelling (``call-id`` -> ``Call-ID``); unknown ones are returned as
    written (stripped), because extension headers have no registry spelling to restore.
    """
    n = name.strip(_WS)
    return _CANONICAL.get(n.lower(), n)


def _digits(value: str, what: str, reason: Reason) -> int:
    v = value.strip(_WS)
    if not v or len(v) > _MAX_DIGITS or not (v.isascii() and v.isdigit()):
        raise MalformedInput(reason, f"SIP: bad {what} {v[:40]!r}")
    return int(v)


def _split_unquoted(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and angle brackets."""
    parts: list[str] = []
    cur: list[str] = []
    in_quote = False
    in_angle = False
    escape = False
    for ch in value:
        if in_quote:
            cur.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_quote = False
            continue
        if ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _params(text: str) -> dict[str, str]:
    """``;a=b;c`` -> {"a": "b", "c": ""} with lower-cased names."""
    out: dict[str, str] = {}
    for item in _split_unquoted(text, ";"):
        item = item.strip(_WS)
        if not item:
            continue
        name, _, val = item.partition("=")
        out.setdefault(name.strip(_WS).lower(), val.strip(_WS).strip('"'))
    return out


def _name_addr(value: str) -> tuple[str | None, dict[str, str]]:
    """Split a From/To/Contact value into (URI, header params)."""
    v = value.strip(_WS)
    # Skip a quoted display name so '<' or ';' inside it do not confuse us.
    i = 0
    if v.startswith('"'):
        i = 1
        while i < len(v):
            if v[i] == "\\":
                i += 2
                continue
            if v[i] == '"':
                i += 1
                break
            i += 1
    lt = v.find("<", i)
    if lt >= 0:
        gt = v.find(">", lt)
        if gt < 0:
            return v[lt + 1:].strip(_WS) or None, {}
        return v[lt + 1:gt].strip(_WS) or None, _params(v[gt + 1:])
    # addr-spec form: everything after the first ';' are header params (RFC 3261 §20.10).
    uri, _, rest = v[i:].partition(";")
    return uri.strip(_WS) or None, _params(rest)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One parsed SIP request or response.

    ``headers`` holds (canonical long name, value) pairs in wire order, with compact forms expanded
    and folded lines joined. The convenience fields are derived from ``headers`` by :func:`parse`.
    """

    is_request: bool
    method: str | None
    request_uri: str | None
    status_code: int | None
    reason: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    call_id: str | None
    cseq_num: int | None
    cseq_method: str | None
    from_uri: str | None
    from_tag: str | None
    to_uri: str | None
    to_tag: str | None
    via_branch: str | None
    content_type: str | None

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive, compact names accepted), or None."""
        want = canonical_header_name(name).lower()
        for n, v in self.headers:
            if n.lower() == want:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` in wire order (one entry per header line, not comma-split)."""
        want = canonical_header_name(name).lower()
        return [v for n, v in self.headers if n.lower() == want]

    def sdp_bodies(self) -> list[bytes]:
        """The application/sdp body, or the application/sdp parts of a multipart/* body.

        Returns an empty list when there is no SDP. Never raises: a broken multipart body yields
        no parts.
        """
        ctype = self.header("Content-Type")
        if ctype is None:
            return []
        return _sdp_parts(ctype, self.body, depth=0)


def _media_type(ctype: str) -> str:
    return ctype.split(";", 1)[0].strip(_WS).lower()


def _sdp_parts(ctype: str, body: bytes, depth: int) -> list[bytes]:
    mtype = _media_type(ctype)
    if mtype == "application/sdp":
        return [body] if body.strip(b" \t\r\n") else []
    if not mtype.startswith("multipart/") or depth > 4:
        return []
    boundary = _params(ctype.split(";", 1)[1] if ";" in ctype else "").get("boundary")
    if not boundary:
        return []
    return [sdp for part_type, part in _multipart(body, boundary) for sdp in _sdp_parts(part_type, part, depth + 1)]


def _multipart(body: bytes, boundary: str) -> list[tuple[str, bytes]]:
    """Split a MIME multipart body (RFC 2046 §5.1.1) into (content type, part body)."""
    delim = b"--" + boundary.encode("utf-8", "replace")
    out: list[tuple[str, bytes]] = []
    chunks = body.split(delim)
    # chunks[0] is the preamble; a chunk starting with "--" is the close delimiter.
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        # The CRLF before a delimiter belongs to the delimiter.
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        # Drop the rest of the delimiter line (transport padding) and its line end.
        nl = chunk.find(b"\n")
        if nl < 0:
            continue
        chunk = chunk[nl + 1:]
        m = _HEADER_END.search(chunk)
        if chunk.startswith((b"\r\n", b"\n")):  # part with no headers
            head, part = b"", chunk[2 if chunk.startswith(b"\r\n") else 1:]
        elif m is None:
            continue
        else:
            head, part = chunk[:m.start()], chunk[m.end():]
        ptype = "text/plain"  # RFC 2046 default for parts
        for line in head.decode("utf-8", "replace").split("\n"):
            name, sep, value = line.partition(":")
            if sep and canonical_header_name(name) == "Content-Type":
                ptype = value.strip(_WS)
        out.append((ptype, part))
    return out


def _find_start(first: bytes) -> tuple[int, re.Match[bytes] | None, re.Match[bytes] | None]:
    """Match a start line; allow junk before a known method/status line (returns junk length)."""
    m_req = _REQUEST_LINE.fullmatch(first)
    if m_req is not None:
        method = m_req.group(1).upper()
        if method.decode("ascii") not in _KNOWN_METHODS:
            # Junk glued to a known method ("DBREGISTER", Zeek's sip-junk-before-request): strip
            # it the way Wireshark does (an extension method ending in a core method name is unheard of).
            for known in _KNOWN_METHODS:
                if method.endswith(known.encode()):
                    skip = len(method) - len(known)
                    return skip, _REQUEST_LINE.fullmatch(first[skip:]), None
        return 0, m_req, None
    m_st = _STATUS_LINE.fullmatch(first)
    if m_st is not None:
        return 0, None, m_st
    j = _JUNK_REQUEST.search(first) or _JUNK_STATUS.search(first)
    if j is not None and j.start() > 0:
        rest = first[j.start():]
        return j.start(), _REQUEST_LINE.fullmatch(rest), _STATUS_LINE.fullmatch(rest)
    return 0, None, None


def _is_sip20_start_line(line: bytes) -> bool:
    m = _REQUEST_LINE.fullmatch(line)
    if m is not None:
        return m.group(3).upper() == b"SIP/2.0"
    m = _STATUS_LINE.fullmatch(line)
    return m is not None and m.group(1).upper() == b"SIP/2.0"


def looks_like_sip(data: bytes | bytearray | memoryview) -> bool:
    """Cheap check: does ``data`` start with a SIP request or status line?

    Leading CR/LF (keep-alives) are skipped. Never raises.
    """
    head = bytes(data[:2048]).lstrip(b"\r\n")
    nl = head.find(b"\n")
    if nl < 0:
        return False
    _, req, st = _find_start(head[:nl])
    if req is not None:
        return req.group(3).upper() == b"SIP/2.0"
    return st is not None and st.group(1).upper() == b"SIP/2.0"


def _split_header_lines(text: str) -> list[tuple[str, str]]:
    """Unfold (RFC 3261 §7.3.1 LWS) and split header lines into (raw name, value)."""
    out: list[tuple[str, str]] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line:
            continue
        if line[0] in " \t":
            if not out:
                raise MalformedInput(Reason.BAD_HEADER, "SIP: continuation line before any header")
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip(_WS)}".strip(_WS))
            continue
        name, sep, value = line.partition(":")
        name = name.strip(_WS)
        if not sep or not _TOKEN_STR.fullmatch(name):
            raise MalformedInput(Reason.BAD_HEADER, f"SIP: bad header line {line[:40]!r}")
        out.append((name, value.strip(_WS)))
    return out


def parse(data: bytes | bytearray | memoryview) -> SipMessage:
    """Parse one whole SIP message.

    Returns a :class:`SipMessage`; the body is cut to Content-Length when that header is present
    (extra bytes are ignored, as RFC 3261 §18.3 says for datagrams), else the rest of ``data``.

    Raises :class:`MalformedInput` (BAD_START_LINE, BAD_VERSION, BAD_HEADER, BAD_CONTENT_LENGTH,
    TRUNCATED, NOT_SIP) on bad bytes, and nothing else.
    """
    raw = bytes(data).lstrip(b"\r\n")
    if not raw:
        raise MalformedInput(Reason.NOT_SIP, "SIP: empty message")
    m_end = _HEADER_END.search(raw)
    if m_end is None:
        # Some UAs (e.g. Zoiper) send datagrams that end right after the last header with no
        # empty line. The datagram boundary ends the message, so take it as headers and no body.
        head = raw.rstrip(b"\r\n")
        rest = b""
    else:
        head = raw[:m_end.start()]
        rest = raw[m_end.end():]
    nl = head.find(b"\n")
    first, header_bytes = (head, b"") if nl < 0 else (head[:nl], head[nl + 1:])
    first = first.rstrip(b"\r")
    _, m_req, m_st = _find_start(first)
    if m_req is not None:
        if m_req.group(3).upper() != b"SIP/2.0":
            raise MalformedInput(Reason.BAD_VERSION, f"SIP: unsupported version {m_req.group(3)[:20]!r}")
        method: str | None = m_req.group(1).decode("ascii").upper()
        request_uri: str | None = m_req.group(2).decode("utf-8", "replace")
        status: int | None = None
        reason: str | None = None
    elif m_st is not None:
        if m_st.group(1).upper() != b"SIP/2.0":
            raise MalformedInput(Reason.BAD_VERSION, f"SIP: unsupported version {m_st.group(1)[:20]!r}")
        method = None
        request_uri = None
        status = int(m_st.group(2))
        if not 100 <= status <= 699:
            raise MalformedInput(Reason.BAD_START_LINE, f"SIP: status code {status} out of range")
        reason = (m_st.group(3) or b"").decode("utf-8", "replace").strip(_WS)
    else:
        raise MalformedInput(Reason.BAD_START_LINE, f"SIP: bad start line {first[:60]!r}")

    raw_headers = _split_header_lines(header_bytes.decode("utf-8", "replace"))
    headers = tuple((canonical_header_name(n), v) for n, v in raw_headers)

    def first_value(name: str) -> str | None:
        for n, v in headers:
            if n == name:
                return v
        return None

    body = rest
    lengths = {v for n, v in headers if n == "Content-Length"}
    if lengths:
        values = {_digits(v, "Content-Length", Reason.BAD_CONTENT_LENGTH) for v in lengths}
        if len(values) > 1:
            raise MalformedInput(Reason.BAD_CONTENT_LENGTH, "SIP: conflicting Content-Length headers")
        clen = values.pop()
        if clen > len(rest):
            raise MalformedInput(
                Reason.TRUNCATED, f"SIP: body shorter than Content-Length ({len(rest)} < {clen})"
            )
        body = rest[:clen]

    call_id = first_value("Call-ID")
    cseq_num: int | None = None
    cseq_method: str | None = None
    cseq = first_value("CSeq")
    if cseq is not None:
        parts = cseq.split()
        if len(parts) != 2:
            raise MalformedInput(Reason.BAD_HEADER, f"SIP: bad CSeq {cseq[:40]!r}")
        cseq_num = _digits(parts[0], "CSeq number", Reason.BAD_HEADER)
        cseq_method = parts[1].upper()

    from_uri = from_tag = to_uri = to_tag = None
    fv = first_value("From")
    if fv is not None:
        from_uri, fp = _name_addr(fv)
        from_tag = fp.get("tag") or None
    tv = first_value("To")
    if tv is not None:
        to_uri, tp = _name_addr(tv)
        to_tag = tp.get("tag") or None

    via_branch: str | None = None
    vv = first_value("Via")
    if vv is not None:
        top = _split_unquoted(vv, ",")[0]
        _, _, vparams = top.partition(";")
        via_branch = _params(vparams).get("branch") or None

    ct = first_value("Content-Type")
    content_type = _media_type(ct) if ct is not None else None

    return SipMessage(
        is_request=method is not None,
        method=method,
        request_uri=request_uri,
        status_code=status,
        reason=reason,
        headers=headers,
        body=body,
        call_id=call_id,
        cseq_num=cseq_num,
        cseq_method=cseq_method,
        from_uri=from_uri,
        from_tag=from_tag,
        to_uri=to_uri,
        to_tag=to_tag,
        via_branch=via_branch,
        content_type=content_type,
    )


def build_message(
    start_line: str,
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """Serialise a SIP message (a test-data builder; no validation).

    ``start_line`` is e.g. ``"INVITE sip:bob@b SIP/2.0"``. A Content-Length header matching ``body``
    is appended when ``content_length`` is true and ``headers`` has none.
    """
    lines = [start_line]
    has_len = any(canonical_header_name(n) == "Content-Length" for n, _ in headers)
    lines.extend(f"{n}: {v}" for n, v in headers)
    if content_length and not has_len:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


# --------------------------------------------------------------------------------------------------
# TCP framing


class SipStreamFramer:
    """Cut a TCP byte stream into whole SIP messages (RFC 3261 §18.3: framing by Content-Length).

    Sans-I/O: :meth:`feed` only buffers; :meth:`next_message` returns the bytes of one whole message
    or ``None`` when more data is needed. CRLF keep-alives (RFC 5626 §3.5.1) between messages are
    skipped. Every message in a segment is returned by successive calls.

    On bad input :meth:`next_message` raises :class:`MalformedInput` *after* it has already resynced
    (dropped bytes up to the next start line), so the caller counts the error and calls again:

    - NOT_SIP: bytes that are not a start line were skipped;
    - BAD_CONTENT_LENGTH: a message had an unusable Content-Length; its start line was skipped;
    - TOO_LARGE: a message (or its header section) would exceed ``max_bytes``.

    A message without Content-Length is taken to have an empty body (Content-Length is mandatory on
    stream transports).
    """

    #: A start line longer than this without a line end is treated as garbage.
    MAX_START_LINE = 8192

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        if max_bytes < 64:
            raise UsageError("SipStreamFramer: max_bytes must be at least 64")
        self.max_bytes = max_bytes
        self._buf = bytearray()
        # Cache for the message at the front of the buffer: its total length once its header
        # section is complete, and how far we already looked for the header end (avoids O(n^2)
        # rescans when data arrives a byte at a time).
        self._total: int | None = None
        self._scanned = 0

    @property
    def buffered(self) -> int:
        """Bytes currently held (always bounded by the resync rules in :meth:`next_message`)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append stream bytes. Only buffers; parsing happens in :meth:`next_message`."""
        self._buf += data

    def resync(self) -> None:
        """After a gap in the stream: drop everything up to the next start line (not at offset 0)."""
        self._drop_to_next_start(1)

    def _drop_to_next_start(self, search_from: int) -> int:
        buf = self._buf
        self._total = None
        self._scanned = 0
        m = _START_AT_LINE.search(buf, search_from)
        if m is not None:
            cut = m.start(1)
        else:
            # Keep the tail after the last line end: it may be the beginning of a start line.
            last_nl = buf.rfind(b"\n")
            cut = last_nl + 1 if last_nl >= 0 else len(buf)
        del buf[:cut]
        return cut

    def next_message(self) -> bytes | None:
        """Return one whole message's bytes, or None when more data is needed.

        Raises :class:`MalformedInput` (NOT_SIP, BAD_CONTENT_LENGTH, TOO_LARGE) after resyncing, so
        the next call carries on with the following message.
        """
        buf = self._buf
        if self._total is None:
            # Skip CRLF keep-alives ("\r\n\r\n" ping, "\r\n" pong) and stray line ends.
            i = 0
            n = len(buf)
            while i < n and buf[i] in (13, 10):
                i += 1
            if i:
                del buf[:i]
                self._scanned = 0
            if not buf:
                return None
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self.MAX_START_LINE:
                    dropped = len(buf)
                    buf.clear()
                    self._scanned = 0
                    raise MalformedInput(
                        Reason.NOT_SIP, f"SIP stream: {dropped} bytes without a start line skipped"
                    )
                return None
            first = bytes(buf[:nl]).rstrip(b"\r")
            if not _is_sip20_start_line(first):
                dropped = self._drop_to_next_start(1)
                raise MalformedInput(Reason.NOT_SIP, f"SIP stream: {dropped} bytes of non-SIP data skipped")
            m_end = _HEADER_END.search(buf, max(self._scanned - 4, nl))
            if m_end is None:
                self._scanned = len(buf)
                if len(buf) > self.max_bytes:
                    self.resync()
                    raise MalformedInput(
                        Reason.TOO_LARGE, f"SIP stream: header section over {self.max_bytes} bytes"
                    )
                return None
            if m_end.end() > self.max_bytes:
                self.resync()
                raise MalformedInput(Reason.TOO_LARGE, f"SIP stream: header section over {self.max_bytes} bytes")
            head = bytes(buf[:m_end.start()]).decode("latin-1")
            clen = 0
            for line in head.split("\n")[1:]:
                name, sep, value = line.partition(":")
                if sep and canonical_header_name(name) == "Content-Length":
                    v = value.strip(_WS)
                    if not v or len(v) > _MAX_DIGITS or not (v.isascii() and v.isdigit()):
                        self.resync()
                        raise MalformedInput(
                            Reason.BAD_CONTENT_LENGTH, f"SIP stream: bad Content-Length {v[:40]!r}"
                        )
                    clen = int(v)
                    break
            total = m_end.end() + clen
            if total > self.max_bytes:
                self.resync()
                raise MalformedInput(
                    Reason.TOO_LARGE, f"SIP stream: message of {total} bytes over {self.max_bytes}"
                )
            self._total = total
        total = self._total
        if len(buf) < total:
            return None
        msg = bytes(buf[:total])
        del buf[:total]
        self._total = None
        self._scanned = 0
        return msg
