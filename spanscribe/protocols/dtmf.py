"""RFC 4733 telephone-event payloads (DTMF in RTP).

DTMF digits are card numbers and PINs: the event code never appears in ``repr()`` or ``str()`` of a
:class:`TelephoneEvent`, and must never be logged or sent to STT.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import MalformedInput, Reason, UsageError

__all__ = ["TelephoneEvent", "parse"]

_EVENT = struct.Struct("!BBH")  # event, E|R|volume, duration (RFC 4733 §2.3)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload.

    ``event`` is the event code (0-9, 10 ``*``, 11 ``#``, 12-15 A-D, ...) and is hidden from repr/str.
    ``end`` is the E bit, ``volume`` the power level in -dBm0 (0..63), ``duration_ticks`` the duration
    so far in RTP clock ticks.
    """

    event: int = field(repr=False)
    end: bool
    volume: int
    duration_ticks: int

    def to_bytes(self) -> bytes:
        """Serialise to the 4-byte payload (R bit zero). Raises UsageError for out-of-range fields."""
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63 and 0 <= self.duration_ticks <= 0xFFFF):
            raise UsageError("TelephoneEvent: field out of range")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration_ticks)


def parse(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """Parse the first event of an RFC 4733 payload (bytes or memoryview).

    Raises :class:`MalformedInput` (BAD_DTMF) when fewer than 4 bytes are given.
    """
    if len(payload) < 4:
        raise MalformedInput(Reason.BAD_DTMF, f"DTMF: truncated telephone-event ({len(payload)} < 4 bytes)")
    event, flags, duration = _EVENT.unpack_from(payload, 0)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration_ticks=duration)
