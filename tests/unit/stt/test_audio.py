from __future__ import annotations

import numpy as np
import pytest

from spanscribe.stt.audio import int16_to_float32, pcm16le_to_int16, resample, rms_dbfs


def test_pcm16le_parse_and_odd_length() -> None:
    assert pcm16le_to_int16(b"\x01\x00\xff\x7f\x00\x80").tolist() == [1, 32767, -32768]
    with pytest.raises(ValueError, match="odd byte count"):
        pcm16le_to_int16(b"\x01\x00\x02")


def test_levels() -> None:
    assert rms_dbfs(np.zeros(160, np.int16)) == -120.0
    assert rms_dbfs(np.zeros(0, np.int16)) == -120.0
    assert rms_dbfs(np.full(160, 32767, np.int16)) == pytest.approx(0.0, abs=0.01)
    assert int16_to_float32(np.array([-32768, 16384], np.int16)).tolist() == [-1.0, 0.5]


@pytest.mark.parametrize(("rate_in", "rate_out"), [(8000, 16000), (16000, 16000), (44100, 16000), (48000, 16000)])
def test_resample_tone_is_preserved(rate_in: int, rate_out: int) -> None:
    f = 1000.0
    x = np.sin(2 * np.pi * f * np.arange(rate_in) / rate_in).astype(np.float32)
    y = resample(x, rate_in, rate_out)
    assert y.size == -(-x.size * rate_out // rate_in)
    ref = np.sin(2 * np.pi * f * np.arange(y.size) / rate_out)
    edge = rate_out // 50
    assert np.max(np.abs(y[edge:-edge] - ref[edge:-edge])) < 1e-3


def test_resample_8k_to_16k_has_no_image() -> None:
    # A 3 kHz tone upsampled 2x must not leave its 5 kHz image (the zero-stuffing mirror).
    x = np.sin(2 * np.pi * 3000 * np.arange(8000) / 8000).astype(np.float32)
    y = resample(x, 8000, 16000)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / 16000)
    tone = spec[np.argmin(np.abs(freqs - 3000))]
    image = spec[np.argmin(np.abs(freqs - 5000))]
    assert image < tone * 1e-3
