"""SDP parsing (RFC 4566 / RFC 8866) for the media facts the pipeline needs.

Only what binds RTP to a call is extracted: per ``m=`` section the port, protocol, payload types with
their encodings (static RFC 3551 types filled in), connection address, direction, RTCP port, rtcp-mux,
ptime, fmtp and whether the media is encrypted. Bad bytes raise
:class:`~spanscribe.protocols.errors.MalformedInput` with reason ``BAD_SDP`` and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import MalformedInput, Reason

# SIP/SDP linear white space only: str.strip() would also eat U+0085, U+00A0 etc. from values.
_WS = " \t\r\n"

__all__ = ["STATIC_PAYLOAD_TYPES", "RtpMap", "SdpMedia", "SessionDescription", "parse"]


@dataclass(frozen=True, slots=True)
class RtpMap:
    """One ``a=rtpmap`` entry (or a static RFC 3551 payload type). ``encoding`` keeps its case."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int


def _static(pt: int, enc: str, rate: int, ch: int = 1) -> tuple[int, RtpMap]:
    return pt, RtpMap(pt, enc, rate, ch)


#: RFC 3551 §6 tables 4 and 5: static payload types (clock rate in Hz).
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = dict(
    [
        _static(0, "PCMU", 8000),
        _static(3, "GSM", 8000),
        _static(4, "G723", 8000),
        _static(5, "DVI4", 8000),
        _static(6, "DVI4", 16000),
        _static(7, "LPC", 8000),
        _static(8, "PCMA", 8000),
        _static(9, "G722", 8000),  # RTP clock 8000 although audio is 16 kHz (RFC 3551 §4.5.2)
        _static(10, "L16", 44100, 2),
        _static(11, "L16", 44100),
        _static(12, "QCELP", 8000),
        _static(13, "CN", 8000),
        _static(14, "MPA", 90000),
        _static(15, "G728", 8000),
        _static(16, "DVI4", 11025),
        _static(17, "DVI4", 22050),
        _static(18, "G729", 8000),
        _static(25, "CelB", 90000),
        _static(26, "JPEG", 90000),
        _static(28, "nv", 90000),
        _static(31, "H261", 90000),
        _static(32, "MPV", 90000),
        _static(33, "MP2T", 90000),
        _static(34, "H263", 90000),
    ]
)

_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_MAX_DIGITS = 10


@dataclass(frozen=True, slots=True)
class SdpMedia:
    """One ``m=`` section.

    ``connection`` is the media-level ``c=`` address, else the session-level one, else None.
    ``rtpmap`` holds the explicit ``a=rtpmap`` entries plus static payload types listed on the
    ``m=`` line without an rtpmap (RTP profiles only). ``ptime_ms`` is in milliseconds.
    """

    media: str
    port: int
    port_count: int
    proto: str
    payload_types: tuple[int, ...]
    connection: str | None
    rtpmap: dict[int, RtpMap] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime_ms: int | None = None
    rtcp_port: int | None = None
    rtcp_mux: bool = False
    direction: str = "sendrecv"
    crypto: bool = False

    @property
    def encrypted(self) -> bool:
        """True for a secure profile (SAVP/SAVPF, e.g. ``RTP/SAVP``, ``UDP/TLS/RTP/SAVPF``) or crypto."""
        return self.crypto or "SAVP" in self.proto.upper()


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body. ``origin`` is the raw ``o=`` value; ``connection`` the session-level address."""

    origin: str | None
    session_version: int | None
    connection: str | None
    media: tuple[SdpMedia, ...]

    def audio(self) -> list[SdpMedia]:
        """The ``m=audio`` sections, in order."""
        return [m for m in self.media if m.media == "audio"]


def _int(value: str, what: str) -> int:
    v = value.strip(_WS)
    if not v or len(v) > _MAX_DIGITS or not (v.isascii() and v.isdigit()):
        raise MalformedInput(Reason.BAD_SDP, f"SDP: bad {what} {v[:40]!r}")
    return int(v)


def _opt_int(value: str) -> int | None:
    v = value.strip(_WS)
    if not v or len(v) > _MAX_DIGITS or not (v.isascii() and v.isdigit()):
        return None
    return int(v)


def _connection_address(value: str) -> str:
    # c=<nettype> <addrtype> <connection-address>; multicast addresses carry /ttl[/count].
    parts = value.split()
    if len(parts) < 3:
        raise MalformedInput(Reason.BAD_SDP, f"SDP: bad c= line {value[:60]!r}")
    return parts[2].split("/", 1)[0]


class _MediaBuilder:
    __slots__ = (
        "connection", "crypto", "direction", "fmtp", "media", "port", "port_count", "proto", "ptime_ms",
        "payload_types", "rtcp_mux", "rtcp_port", "rtpmap",
    )

    def __init__(self, media: str, port: int, port_count: int, proto: str, pts: tuple[int, ...]) -> None:
        self.media = media
        self.port = port
        self.port_count = port_count
        self.proto = proto
        self.payload_types = pts
        self.connection: str | None = None
        self.rtpmap: dict[int, RtpMap] = {}
        self.fmtp: dict[int, str] = {}
        self.ptime_ms: int | None = None
        self.rtcp_port: int | None = None
        self.rtcp_mux = False
        self.direction: str | None = None
        self.crypto = False

    def build(self, session_conn: str | None, session_dir: str, session_crypto: bool) -> SdpMedia:
        rtpmap = dict(self.rtpmap)
        if "RTP" in self.proto.upper():
            for pt in self.payload_types:
                if pt not in rtpmap and pt in STATIC_PAYLOAD_TYPES:
                    rtpmap[pt] = STATIC_PAYLOAD_TYPES[pt]
        return SdpMedia(
            media=self.media,
            port=self.port,
            port_count=self.port_count,
            proto=self.proto,
            payload_types=self.payload_types,
            connection=self.connection if self.connection is not None else session_conn,
            rtpmap=rtpmap,
            fmtp=dict(self.fmtp),
            ptime_ms=self.ptime_ms,
            rtcp_port=self.rtcp_port,
            rtcp_mux=self.rtcp_mux,
            direction=self.direction if self.direction is not None else session_dir,
            crypto=self.crypto or session_crypto,
        )


def _parse_m(value: str) -> _MediaBuilder:
    # m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    parts = value.split()
    if len(parts) < 3:
        raise MalformedInput(Reason.BAD_SDP, f"SDP: bad m= line {value[:60]!r}")
    media = parts[0].lower()
    port_s, _, count_s = parts[1].partition("/")
    port = _int(port_s, "m= port")
    count = _int(count_s, "m= port count") if count_s else 1
    if port > 65535:
        raise MalformedInput(Reason.BAD_SDP, f"SDP: m= port {port} out of range")
    pts = tuple(int(f) for f in parts[3:] if f.isascii() and f.isdigit() and len(f) <= 3 and int(f) <= 127)
    return _MediaBuilder(media, port, count, parts[2], pts)


def parse(body: bytes | bytearray | memoryview) -> SessionDescription:
    """Parse an SDP body.

    Tolerant of LF-only line ends, trailing blank lines and unknown or malformed ``a=`` attributes
    (those are ignored). Raises :class:`MalformedInput` (BAD_SDP) when there is no ``v=`` line first,
    a line is not ``<letter>=<value>``, or an ``m=``/``c=`` line is unusable.
    """
    text = bytes(body).decode("utf-8", "replace")
    lines = [ln.strip("\r") for ln in text.split("\n")]
    lines = [ln for ln in lines if ln.strip(_WS)]
    if not lines:
        raise MalformedInput(Reason.BAD_SDP, "SDP: empty body")
    if not lines[0].startswith("v="):
        raise MalformedInput(Reason.BAD_SDP, f"SDP: first line is not v= ({lines[0][:40]!r})")
    origin: str | None = None
    session_version: int | None = None
    session_conn: str | None = None
    session_dir = "sendrecv"
    session_crypto = False
    media: list[_MediaBuilder] = []
    cur: _MediaBuilder | None = None
    for line in lines:
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z" or "A" <= line[0] <= "Z"):
            raise MalformedInput(Reason.BAD_SDP, f"SDP: bad line {line[:40]!r}")
        kind = line[0]
        value = line[2:].strip(_WS)
        if kind == "m":
            cur = _parse_m(value)
            media.append(cur)
        elif kind == "c":
            addr = _connection_address(value)
            if cur is None:
                session_conn = addr
            else:
                cur.connection = addr
        elif kind == "o" and cur is None:
            origin = value
            fields = value.split()
            session_version = _opt_int(fields[2]) if len(fields) >= 3 else None
        elif kind == "a":
            name, _, arg = value.partition(":")
            name = name.strip(_WS).lower()
            if name in _DIRECTIONS:
                if cur is None:
                    session_dir = name
                else:
                    cur.direction = name
            elif name in ("crypto", "fingerprint"):
                if cur is None:
                    session_crypto = True  # a session-level fingerprint covers every m= section
                else:
                    cur.crypto = True
            elif cur is None:
                continue
            elif name == "rtpmap":
                _rtpmap(cur, arg)
            elif name == "fmtp":
                pt_s, _, params = arg.strip(_WS).partition(" ")
                pt = _opt_int(pt_s)
                if pt is not None and pt <= 127:
                    cur.fmtp[pt] = params.strip(_WS)
            elif name == "ptime":
                p = arg.strip(_WS).split(".", 1)[0]  # some stacks write "20.0"
                cur.ptime_ms = _opt_int(p)
            elif name == "rtcp":
                port = _opt_int(arg.split()[0]) if arg.split() else None
                if port is not None and port <= 65535:
                    cur.rtcp_port = port
            elif name == "rtcp-mux":
                cur.rtcp_mux = True
    return SessionDescription(
        origin=origin,
        session_version=session_version,
        connection=session_conn,
        media=tuple(m.build(session_conn, session_dir, session_crypto) for m in media),
    )


def _rtpmap(cur: _MediaBuilder, arg: str) -> None:
    # a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    pt_s, _, spec = arg.strip(_WS).partition(" ")
    pt = _opt_int(pt_s)
    if pt is None or pt > 127:
        return
    parts = spec.strip(_WS).split("/")
    if len(parts) < 2 or not parts[0]:
        return
    rate = _opt_int(parts[1])
    if rate is None:
        return
    channels = _opt_int(parts[2]) if len(parts) >= 3 else 1
    cur.rtpmap[pt] = RtpMap(pt, parts[0], rate, channels if channels is not None else 1)
