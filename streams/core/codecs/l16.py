"""L16: 16-bit linear PCM in network (big-endian) byte order (RFC 3551 §4.5.11)."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .base import Decoder, Pcm


class L16Decoder(Decoder):
    """L16 at any clock rate; multi-channel payloads are averaged to mono (channels never mix parties)."""

    encoding = "L16"

    def __init__(self, clock_rate: int = 8000, channels: int = 1) -> None:
        self.sample_rate = clock_rate
        self.rtp_clock_rate = clock_rate
        self.channels = max(1, channels)

    def ticks_for_bytes(self, nbytes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return nbytes // (2 * self.channels)

    def decode(self, payload: bytes) -> Pcm:
        n = len(payload) // 2
        pcm = np.frombuffer(payload[: n * 2], dtype=">i2")
        if self.channels > 1:
            frames = n // self.channels
            mono = pcm[: frames * self.channels].reshape(frames, self.channels).astype(np.int32).mean(axis=1)
            return np.asarray(mono, dtype=np.int16)
        return pcm.astype(np.int16)

    def decode_many(self, payloads: bytes, lengths: npt.NDArray[Any]) -> Pcm:
        if np.all(lengths % (2 * self.channels) == 0):
            return self.decode(payloads)
        off = 0
        parts = []
        for ln in lengths.tolist():
            parts.append(self.decode(payloads[off:off + ln]))
            off += ln
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
