"""Errors raised by the pure protocol parsers.

Every parser entry point in :mod:`spanscribe.protocols` raises only :class:`MalformedInput` on bad
bytes; :class:`UsageError` means the caller broke an API rule. ``MalformedInput.reason`` is a member of
the closed :class:`Reason` enum so it can be used as a low-cardinality Prometheus label.
"""
from __future__ import annotations

import enum

__all__ = ["MalformedInput", "ProtocolError", "Reason", "UsageError"]


class Reason(enum.StrEnum):
    """Why input was rejected (closed set: a metrics label, never free text)."""

    TRUNCATED = "truncated"
    BAD_VERSION = "bad_version"
    BAD_START_LINE = "bad_start_line"
    BAD_HEADER = "bad_header"
    BAD_CONTENT_LENGTH = "bad_content_length"
    TOO_LARGE = "too_large"
    BAD_SDP = "bad_sdp"
    BAD_RTP = "bad_rtp"
    BAD_RTCP = "bad_rtcp"
    BAD_DTMF = "bad_dtmf"
    NOT_SIP = "not_sip"
    BAD_LINK = "bad_link"
    BAD_IP = "bad_ip"
    BAD_FRAGMENT = "bad_fragment"
    BAD_TCP = "bad_tcp"
    UNSUPPORTED = "unsupported"


class ProtocolError(Exception):
    """Root of every error this package raises on purpose."""


class MalformedInput(ProtocolError):
    """The bytes on the wire were wrong. ``str(exc)`` names the field, ``exc.reason`` classifies it."""

    reason: Reason

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[MalformedInput], tuple[Reason, str]]:
        # Keep the two-argument constructor picklable (exceptions cross process pools).
        return (type(self), (self.reason, str(self)))

    def __repr__(self) -> str:
        return f"MalformedInput({self.reason.value!r}, {str(self)!r})"


class UsageError(ProtocolError):
    """Our caller was wrong (bad argument, API misuse), not the wire."""
