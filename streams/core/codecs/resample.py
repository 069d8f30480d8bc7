"""Rational-ratio polyphase FIR resampling of int16 PCM (numpy, vectorised per block).

A Kaiser-windowed sinc low-pass (linear phase) at the lower of the two Nyquist rates. The
:class:`Resampler` keeps its input history and output phase between blocks so a stream cut into
100 ms chunks resamples exactly as if it were one array; its state is JSON-able. The constant group
delay is ``(taps - 1) / 2`` samples at the upsampled rate (1.97 ms for 8 -> 16 kHz).
"""
from __future__ import annotations

from math import gcd
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Pcm = npt.NDArray[np.int16]

_TAPS = 32  # per max(up, down): 64 taps at 16 kHz for 8 <-> 16 kHz, a ~900 Hz transition band
_BETA = 5.65  # Kaiser beta for ~60 dB stop-band attenuation
_CUTOFF = 0.97  # of the lower Nyquist frequency: the 3.4 kHz telephone band stays flat


def _taps_per_phase(up: int, down: int) -> int:
    return -(-_TAPS * max(up, down) // up)


def _design(up: int, down: int) -> npt.NDArray[np.float64]:
    """Polyphase bank, shape (up, K), each row reversed for a dot with an input window.

    Every tap is an integer times 2**-shift, with each phase's sum of |integers| at most 2**36: a dot
    with int16 input is then a multiple of 2**-shift below 2**51 of it, which float64 holds and sums
    EXACTLY in any order. Whatever computes the filter (one ``np.correlate`` per stream, a GEMM over
    many streams at once) gets the same output bit for bit.
    """
    k = _taps_per_phase(up, down)
    ntaps = k * up
    fc = _CUTOFF / (2.0 * max(up, down))  # cycles per upsampled sample
    n = np.arange(ntaps, dtype=np.float64) - (ntaps - 1) / 2.0
    h = 2.0 * fc * np.sinc(2.0 * fc * n) * np.kaiser(ntaps, _BETA)
    h *= up / h.sum()  # unity DC gain after zero-stuffing
    # phase p holds taps h[p + q*up], q = 0..K-1, applied to x[i0 - q]; reversed -> window order.
    bank = h.reshape(k, up).T  # bank[p, q] = h[p + q*up]
    shift = int(np.floor(np.log2(2.0 ** 36 / float(np.abs(bank).sum(axis=1).max()))))
    quantised = np.ldexp(np.rint(np.ldexp(bank, shift)), -shift)
    return np.ascontiguousarray(quantised[:, ::-1])


_MAX_CORRELATE_PHASES = 8  # up to this many polyphase branches, correlate each over the whole block

_BANKS: dict[tuple[int, int], npt.NDArray[np.float64]] = {}


class Resampler:
    """Stateful resampler from ``src_rate`` to ``dst_rate`` Hz (any rational ratio)."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = gcd(src_rate, dst_rate)
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.up = dst_rate // g
        self.down = src_rate // g
        self._identity = self.up == self.down
        key = (self.up, self.down)
        if not self._identity and key not in _BANKS:
            _BANKS[key] = _design(self.up, self.down)
        self._bank = _BANKS.get(key)
        self._k = _taps_per_phase(self.up, self.down)
        self._hist = np.zeros(self._k - 1, dtype=np.float64)
        self._next = 0  # upsampled index of the next output, relative to the next block's first input

    def process(self, pcm: npt.NDArray[Any]) -> Pcm:
        """Resample one block. Returns int16 at ``dst_rate`` (length ~ len * dst / src)."""
        x = np.asarray(pcm)
        if self._identity:
            return x.astype(np.int16, copy=False)
        n = x.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int16)
        assert self._bank is not None
        k = self._k
        ext = np.concatenate([self._hist, x.astype(np.float64)])
        total_up = n * self.up
        idx = np.arange(self._next, total_up, self.down, dtype=np.int64)
        i0 = idx // self.up
        ph = idx - i0 * self.up
        y: npt.NDArray[np.float64]
        if self.up <= _MAX_CORRELATE_PHASES:
            # one correlation per phase over the whole block (C loops, no gathers), then pick
            conv = np.stack([np.correlate(ext, self._bank[p], "valid") for p in range(self.up)])
            y = conv[ph, i0]
        else:
            win = sliding_window_view(ext, k)  # win[i] = ext[i .. i+k-1] = x[i-k+1 .. i]
            y = np.einsum("ij,ij->i", win[i0], self._bank[ph])
        last = int(idx[-1]) if idx.size else self._next - self.down
        self._next = last + self.down - total_up
        self._hist = ext[-(k - 1):].copy()
        return _to_int16(y)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"hist": [int(v) for v in self._hist.tolist()], "next": self._next}

    def restore(self, state: dict[str, Any]) -> None:
        self._hist = np.asarray(state["hist"], dtype=np.float64)
        self._next = int(state["next"])


def _to_int16(y: npt.NDArray[np.float64]) -> Pcm:
    """Round to nearest (ties to even) and saturate; ``y`` may be overwritten."""
    if not y.flags.writeable or not y.flags.c_contiguous:
        y = y.copy()
    np.rint(y, out=y)
    np.maximum(y, -32768.0, out=y)
    np.minimum(y, 32767.0, out=y)
    return y.astype(np.int16)


_BLOCK = 32  # input samples per GEMM row in process_rows
_GEMM_ROWS = 64
_ROUND_ROWS = 512  # 256 KiB of float64 products
_TOEPLITZ: dict[tuple[int, int], npt.NDArray[np.float64]] = {}


def _toeplitz(up: int, down: int, k: int) -> npt.NDArray[np.float64]:
    """M of shape (_BLOCK + k - 1, _BLOCK * up): a window of ``_BLOCK + k - 1`` inputs times M gives the
    ``_BLOCK * up`` outputs of ``_BLOCK`` inputs, interleaved by phase (output 2i+p = phase p at i)."""
    m = _TOEPLITZ.get((up, down))
    if m is None:
        bank = _BANKS[(up, down)]
        m = np.zeros((_BLOCK + k - 1, _BLOCK * up), dtype=np.float64)
        for i in range(_BLOCK):
            for p in range(up):
                m[i:i + k, i * up + p] = bank[p]
        _TOEPLITZ[(up, down)] = m
    return m


def rows_supported(r: Resampler) -> bool:
    """True if :func:`process_rows` can take ``r`` (an integer upsampling ratio at phase 0)."""
    return not r._identity and r.down == 1 and r._next == 0


def _buffer(scratch: dict[str, npt.NDArray[np.float64]] | None, name: str, shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    """A float64 work array of ``shape``, reused from ``scratch`` when given (contents undefined)."""
    size = shape[0] * shape[1]
    if scratch is None:
        return np.empty(shape, dtype=np.float64)
    buf = scratch.get(name)
    if buf is None or buf.shape[0] < size:
        buf = scratch[name] = np.empty(max(size, 1 << 16), dtype=np.float64)
    return buf[:size].reshape(shape)


def process_rows(resamplers: list[Resampler], x: npt.NDArray[np.int16],
                 scratch: dict[str, npt.NDArray[np.float64]] | None = None) -> Pcm:
    """Resample row i of ``x`` (shape (S, N), int16) with ``resamplers[i]``, all at once.

    Equals ``resamplers[i].process(x[i])`` for every row bit for bit (the taps are integers, so the
    sums are exact in any order) and updates each resampler's history the same way. All resamplers
    must have the same ratio and satisfy :func:`rows_supported`. Returns (S, N * up) int16.
    ``scratch``: a dict the caller keeps to reuse the work arrays between calls (fresh arrays of
    some 100 KiB per stream batch cost page faults: measured 30% of the time).

    One GEMM for the whole batch: each stream's input is cut into blocks of ``_BLOCK`` samples; a row
    holds a block and the ``k - 1`` samples before it, times a banded (Toeplitz) matrix.
    """
    r0 = resamplers[0]
    assert r0._bank is not None
    up, k = r0.up, r0._k
    s, n = x.shape
    nb = -(-n // _BLOCK)
    width = nb * _BLOCK + k - 1
    ext = _buffer(scratch, "ext", (s, width))
    ext[:, :k - 1] = [r._hist for r in resamplers]
    ext[:, k - 1:k - 1 + n] = x
    ext[:, k - 1 + n:] = 0.0
    win = np.lib.stride_tricks.as_strided(ext, shape=(s, nb, _BLOCK + k - 1),
                                          strides=(ext.strides[0], _BLOCK * ext.strides[1], ext.strides[1]),
                                          writeable=False)
    total = s * nb
    rows = _buffer(scratch, "rows", (total, _BLOCK + k - 1))
    np.copyto(rows.reshape(s, nb, _BLOCK + k - 1), win)  # overlapping windows side by side
    m = _toeplitz(up, r0.down, k)
    out = np.empty((total, m.shape[1]), dtype=np.int16)
    y = _buffer(scratch, "y", (min(total, _ROUND_ROWS), m.shape[1]))
    # GEMMs of _GEMM_ROWS rows stay under OpenBLAS's threading threshold (m*n*k <= 262144): its worker
    # threads spin-wait, which cost more CPU than the threads save at these sizes (measured: 2x). The
    # rounding runs on _ROUND_ROWS rows of products at a time, while they are in cache.
    for i in range(0, total, _ROUND_ROWS):
        yi = y[:min(_ROUND_ROWS, total - i)]
        for j in range(0, yi.shape[0], _GEMM_ROWS):
            np.matmul(rows[i + j:i + j + _GEMM_ROWS], m, out=yi[j:j + _GEMM_ROWS])
        np.rint(yi, out=yi)
        np.maximum(yi, -32768.0, out=yi)
        np.minimum(yi, 32767.0, out=yi)
        out[i:i + _ROUND_ROWS] = yi
    hist = ext[:, n:n + k - 1].copy()
    for i, r in enumerate(resamplers):
        r._hist = hist[i]
    res = out.reshape(s, nb * _BLOCK * up)
    return res if nb * _BLOCK == n else res[:, :n * up].copy()


def resample(pcm: npt.NDArray[Any], src_rate: int, dst_rate: int) -> Pcm:
    """Resample a whole int16 array from ``src_rate`` to ``dst_rate`` Hz (fresh filter state)."""
    return Resampler(src_rate, dst_rate).process(pcm)
