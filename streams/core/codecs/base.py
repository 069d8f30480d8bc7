"""Decoder ABC shared by every codec (CONVENTIONS.md §4)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]


class Decoder(ABC):
    """Decodes the RTP payloads of one stream into 16-bit linear PCM.

    ``sample_rate`` is the audio rate of the output (Hz); ``rtp_clock_rate`` the RTP timestamp clock,
    which differs for G.722 (RFC 3551 §4.5.2: clock 8000, audio 16000). Stateful codecs (G.722)
    carry state between calls; :meth:`snapshot`/:meth:`restore` make that state JSON-able.
    """

    sample_rate: int = 8000
    rtp_clock_rate: int = 8000
    encoding: str = ""

    @abstractmethod
    def decode(self, payload: bytes) -> Pcm:
        """Decode one payload. Returns int16 samples at :attr:`sample_rate`. Never raises on odd bytes."""

    def decode_many(self, payloads: bytes, lengths: npt.NDArray[Any]) -> Pcm:
        """Decode several consecutive payloads joined in ``payloads`` (``lengths`` bytes each).

        Default: decode the join at once, which is right for sample-oriented codecs whose frames
        are byte aligned. Returns int16 samples at :attr:`sample_rate`.
        """
        return self.decode(payloads)

    def ticks_for_bytes(self, nbytes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """RTP clock ticks covered by payloads of ``nbytes`` bytes (G.711, G.722: one tick per byte)."""
        return nbytes

    def samples_for_ticks(self, ticks: int) -> int:
        """Output samples covering ``ticks`` RTP clock ticks."""
        return ticks * self.sample_rate // self.rtp_clock_rate

    def snapshot(self) -> dict[str, Any]:
        """JSON-able decoder state (empty for stateless codecs)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot` output."""
        return None
