"""Pure PCM helpers: 16-bit little-endian bytes <-> numpy, level in dBFS, and a windowed-sinc resampler.

No I/O, no clock. Whisper wants float32 mono at 16 kHz; telephony gives 8 kHz.
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

WHISPER_RATE_HZ = 16000
MIN_RATE_HZ = 8000
MAX_RATE_HZ = 48000
_HALF_TAPS = 16  # zero crossings each side of the sinc kernel: plenty for speech, cheap in numpy


def pcm16le_to_int16(data: bytes) -> np.ndarray:
    """Interpret ``data`` as 16-bit little-endian mono samples (copy, native int16).

    Raises:
        ValueError: odd byte count (a frame split inside a sample).
    """
    if len(data) % 2:
        raise ValueError(f"PCM frame has an odd byte count ({len(data)}): 16-bit samples expected")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def int16_to_float32(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def rms_dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale (-120 for digital silence)."""
    if pcm.size == 0:
        return -120.0
    ms = float(np.mean(np.square(pcm.astype(np.float64)))) / (32768.0 * 32768.0)
    return max(-120.0, 10.0 * np.log10(ms)) if ms > 0 else -120.0


@lru_cache(maxsize=16)
def _kernel(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase-free windowed-sinc table: sampled finely enough for ``up`` output phases."""
    cutoff = 1.0 / max(up, down)  # of the upsampled Nyquist
    half = _HALF_TAPS * max(up, down)
    n = np.arange(-half, half + 1, dtype=np.float64)
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, 8.0)
    return (h * up).astype(np.float32), half


def resample(x: np.ndarray, rate_in: int, rate_out: int = WHISPER_RATE_HZ) -> np.ndarray:
    """Resample a float32 (or int16) mono signal from ``rate_in`` to ``rate_out`` Hz (rational ratio).

    Equivalent to zero-stuffing by ``up``, a Kaiser-windowed sinc low-pass at the lower Nyquist, and
    keeping every ``down``-th sample, but only the kept outputs are computed. Edges are zero-padded.

    Returns:
        float32 array of ``ceil(len(x) * rate_out / rate_in)`` samples.
    """
    xf = x.astype(np.float32) if x.dtype != np.float32 else x
    if rate_in == rate_out or xf.size == 0:
        return xf.copy()
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    h, half = _kernel(up, down)
    n_out = -(-xf.size * up // down)
    out = np.empty(n_out, dtype=np.float32)
    # Output k sits at upsampled position k*down; input sample i sits at i*up. The kernel reaches
    # +-half upsampled positions, i.e. +-half/up input samples.
    reach = half // up + 1
    padded = np.concatenate([np.zeros(reach, np.float32), xf, np.zeros(reach + 1, np.float32)])
    taps = np.arange(-reach, reach + 1)
    block = 4096
    for s in range(0, n_out, block):
        k = np.arange(s, min(n_out, s + block))
        pos = k * down  # upsampled index
        base = pos // up  # nearest input sample at or below
        idx = base[:, None] + taps[None, :]  # input indices
        offs = pos[:, None] - idx * up + half  # kernel index
        valid = (offs >= 0) & (offs < h.size)
        w = np.where(valid, h[np.clip(offs, 0, h.size - 1)], 0.0)
        out[k - 0] = np.sum(w * padded[idx + reach], axis=1)
    return out
