"""ITU-T G.711 A-law and mu-law by numpy lookup tables (one ``take`` per payload)."""
from __future__ import annotations

import numpy as np

from .base import Decoder, Pcm


def _ulaw_table() -> Pcm:
    # ITU-T G.711 mu-law expansion (bias 0x84), as in the Sun/CCITT reference g711.c.
    out = np.zeros(256, dtype=np.int16)
    for code in range(256):
        u = ~code & 0xFF
        t = ((u & 0x0F) << 3) + 0x84
        t <<= (u & 0x70) >> 4
        out[code] = (0x84 - t) if (u & 0x80) else (t - 0x84)
    return out


def _alaw_table() -> Pcm:
    # ITU-T G.711 A-law expansion (even bits inverted, 0x55).
    out = np.zeros(256, dtype=np.int16)
    for code in range(256):
        a = code ^ 0x55
        t = (a & 0x0F) << 4
        seg = (a & 0x70) >> 4
        if seg == 0:
            t += 8
        else:
            t = (t + 0x108) << (seg - 1)
        out[code] = t if (a & 0x80) else -t
    return out


ULAW_TABLE: Pcm = _ulaw_table()
ALAW_TABLE: Pcm = _alaw_table()
ULAW_TABLE.setflags(write=False)
ALAW_TABLE.setflags(write=False)


class PcmuDecoder(Decoder):
    """G.711 mu-law, 8 kHz."""

    encoding = "PCMU"

    def decode(self, payload: bytes) -> Pcm:
        return ULAW_TABLE[np.frombuffer(payload, dtype=np.uint8)]


class PcmaDecoder(Decoder):
    """G.711 A-law, 8 kHz."""

    encoding = "PCMA"

    def decode(self, payload: bytes) -> Pcm:
        return ALAW_TABLE[np.frombuffer(payload, dtype=np.uint8)]
