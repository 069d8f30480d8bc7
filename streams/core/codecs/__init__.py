"""Audio codecs: one :class:`Decoder` ABC, a registry keyed by upper-case SDP encoding name.

PTs are dynamic, so the registry is by encoding name (CONVENTIONS.md §4). ``decoder_for`` returns
None for an encoding we cannot decode (the caller notes it, never transcribes noise).
"""
from __future__ import annotations

from collections.abc import Callable

from .base import Decoder, Pcm
from .g711 import ALAW_TABLE, ULAW_TABLE, PcmaDecoder, PcmuDecoder
from .g722 import G722Decoder
from .l16 import L16Decoder
from .resample import Resampler, resample

__all__ = ["ALAW_TABLE", "REGISTRY", "ULAW_TABLE", "Decoder", "G722Decoder", "L16Decoder", "Pcm",
           "PcmaDecoder", "PcmuDecoder", "Resampler", "decoder_for", "resample"]

#: Encoding name (upper case) -> factory(clock_rate, channels).
REGISTRY: dict[str, Callable[[int, int], Decoder]] = {
    "PCMU": lambda rate, ch: PcmuDecoder(),
    "PCMA": lambda rate, ch: PcmaDecoder(),
    "G722": lambda rate, ch: G722Decoder(),
    "L16": lambda rate, ch: L16Decoder(rate, ch),
}

#: Payloads that are never audio for STT: RFC 4733 events and RFC 3389 comfort noise.
NON_AUDIO = frozenset({"TELEPHONE-EVENT", "CN"})


def decoder_for(encoding: str, clock_rate: int, channels: int = 1) -> Decoder | None:
    """A fresh decoder for an SDP encoding name (case-insensitive), or None if unknown.

    G.711 and G.722 require an 8000 Hz RTP clock (RFC 3551); another rate is treated as unknown.
    """
    enc = encoding.upper()
    factory = REGISTRY.get(enc)
    if factory is None:
        return None
    if enc in ("PCMU", "PCMA", "G722") and clock_rate != 8000:
        return None
    return factory(clock_rate, channels)
