"""RFC 4733 telephone-event parsing; the digit must never leak through repr/str."""
from __future__ import annotations

import pytest

from spanscribe.protocols import MalformedInput, Reason, TelephoneEvent, UsageError, dtmf


def test_parse_by_hand() -> None:
    # event 5, E=1, R=0, volume 10, duration 800 ticks (RFC 4733 §2.3 layout)
    ev = dtmf.parse(bytes([5, 0x80 | 10, 0x03, 0x20]))
    assert (ev.event, ev.end, ev.volume, ev.duration_ticks) == (5, True, 10, 800)


def test_reserved_bit_ignored_and_not_end() -> None:
    ev = dtmf.parse(bytes([11, 0x40 | 63, 0xFF, 0xFF]))
    assert (ev.event, ev.end, ev.volume, ev.duration_ticks) == (11, False, 63, 65535)


def test_longer_payload_takes_first_event_and_memoryview() -> None:
    ev = dtmf.parse(memoryview(bytes([9, 0x8A, 0, 160, 1, 2, 3, 4])))
    assert (ev.event, ev.duration_ticks) == (9, 160)


@pytest.mark.parametrize("data", [b"", b"\x05", b"\x05\x8a\x00"])
def test_truncated(data: bytes) -> None:
    with pytest.raises(MalformedInput) as ei:
        dtmf.parse(data)
    assert ei.value.reason is Reason.BAD_DTMF
    assert "truncated telephone-event" in str(ei.value)


def test_digit_not_in_repr_or_str() -> None:
    ev = TelephoneEvent(event=7, end=False, volume=10, duration_ticks=4321)
    for text in (repr(ev), str(ev), f"{ev}", f"{ev!r}"):
        assert "event=" not in text
        assert "7" not in text
        assert "4321" in text  # the other fields are still shown


def test_to_bytes_round_trip_and_range() -> None:
    ev = TelephoneEvent(event=15, end=True, volume=3, duration_ticks=1600)
    assert dtmf.parse(ev.to_bytes()) == ev
    with pytest.raises(UsageError):
        TelephoneEvent(event=256, end=False, volume=0, duration_ticks=0).to_bytes()
    with pytest.raises(UsageError):
        TelephoneEvent(event=1, end=False, volume=64, duration_ticks=0).to_bytes()
