"""Packet loss concealment for short gaps (in the spirit of ITU-T G.711 Appendix I, much simplified).

A lost 20 ms packet filled with silence cuts a hole in a word, and the recogniser hears two words or
none (measured on the example call with 5% loss: callee WER +5.3 points on average with silence, -0.3 with
the previous audio repeated; docs/performance.md, "Offline transcribe fidelity"). For a gap of at most
``max_ms`` we repeat the last pitch-sized stretch of decoded audio with a linear fade to zero across the
gap; longer gaps continue with silence. Pure numpy, deterministic.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["TAIL_MS", "conceal"]

TAIL_MS = 20  # how much decoded history a stream keeps for concealment


def conceal(tail: npt.NDArray[np.int16] | None, n: int, sample_rate: int,
            max_ms: int = 60) -> npt.NDArray[np.int16]:
    """``n`` samples to put in a gap, given the last decoded samples ``tail`` (oldest first).

    Returns silence when there is no history. The first ``max_ms`` of the gap repeat the last
    period of ``tail`` (10 ms, a typical pitch multiple) fading linearly from full level to zero; the rest
    is silence. The fade keeps the repeat from buzzing and ends exactly at zero.
    """
    out = np.zeros(max(n, 0), dtype=np.int16)
    if tail is None or tail.size == 0 or n <= 0:
        return out
    period = min(int(tail.size), max(1, sample_rate // 100))
    m = min(n, sample_rate * max_ms // 1000)
    if m <= 0:
        return out
    cycle = np.asarray(tail[-period:], dtype=np.float64)
    reps = np.resize(cycle, m)
    fade = np.linspace(1.0, 0.0, m + 1, dtype=np.float64)[1:]
    out[:m] = np.rint(reps * fade).astype(np.int16)
    return out
