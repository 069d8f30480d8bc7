"""The one shared, pure SIP/SDP/RTP/RTCP/RFC 4733 parser (see docs/design/protocols-api.md).

No sockets, clocks, asyncio, Kafka or Faust; bad bytes raise :class:`MalformedInput` only.
"""
from __future__ import annotations

from . import dtmf, rtp, sdp, sip
from .dtmf import TelephoneEvent
from .errors import MalformedInput, ProtocolError, Reason, UsageError
from .rtp import (
    RtcpPacket,
    RtpHeader,
    build_rtp,
    is_rtcp,
    looks_like_rtp,
    parse_rtcp,
    parse_rtp,
    rtp_fields,
    seq_delta,
    seq_newer,
    ts_delta,
)
from .sdp import RtpMap, SdpMedia, SessionDescription
from .sip import SipMessage, SipStreamFramer, looks_like_sip

__all__ = [
    "MalformedInput",
    "ProtocolError",
    "Reason",
    "RtcpPacket",
    "RtpHeader",
    "RtpMap",
    "SdpMedia",
    "SessionDescription",
    "SipMessage",
    "SipStreamFramer",
    "TelephoneEvent",
    "UsageError",
    "build_rtp",
    "dtmf",
    "is_rtcp",
    "looks_like_rtp",
    "looks_like_sip",
    "parse_rtcp",
    "parse_rtp",
    "rtp",
    "rtp_fields",
    "sdp",
    "seq_delta",
    "seq_newer",
    "sip",
    "ts_delta",
]
