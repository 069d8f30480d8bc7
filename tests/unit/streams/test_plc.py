"""Packet loss concealment: repeats the last period with a fade, bounded, deterministic."""
from __future__ import annotations

import numpy as np

from streams.core.codecs.plc import conceal


def test_no_history_is_silence() -> None:
    assert conceal(None, 160, 8000).tolist() == [0] * 160
    assert conceal(np.zeros(0, dtype=np.int16), 10, 8000).tolist() == [0] * 10


def test_repeats_last_period_with_fade_to_zero() -> None:
    tail = (np.arange(160) * 10).astype(np.int16)  # last 10 ms period = samples 80..159
    out = conceal(tail, 160, 8000)
    assert out.dtype == np.int16 and out.shape == (160,)
    # first sample: the period's first sample at almost full level
    assert abs(int(out[0]) - int(tail[80]) * 159 / 160) <= 1
    # it repeats with period 80 (before the fade is applied)
    ratio = out[1:79].astype(float) / np.maximum(tail[81:159].astype(float), 1)
    assert np.all(np.diff(ratio) <= 1e-9)  # monotonically fading
    assert out[-1] == 0


def test_long_gap_conceals_only_max_ms_then_silence() -> None:
    tail = np.full(160, 1000, dtype=np.int16)
    out = conceal(tail, 8000, 8000, max_ms=60)
    assert np.count_nonzero(out[:480]) >= 470
    assert not out[480:].any()


def test_deterministic() -> None:
    rng = np.random.default_rng(3)
    tail = rng.integers(-30000, 30000, 160).astype(np.int16)
    assert np.array_equal(conceal(tail, 333, 8000), conceal(tail.copy(), 333, 8000))
