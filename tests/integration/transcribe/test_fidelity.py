"""Fidelity of ``spanscribe transcribe --no-stt``: the audio it writes per speaker IS the G.711 decode of
that speaker's RTP payloads, placed at their RTP-timestamp positions (checked sample for sample at the
codec's 8 kHz with ``--wav-rate 8000``), and the 16 kHz WAV (what STT gets) is that same audio resampled:
same duration, the documented 1.97 ms filter delay, in-band error far below the G.711 noise floor.

The reference is computed here, independently of streams.core: our own mu-law table from the G.711
formula (checked against sox), dpkt for the frames, positions from RTP timestamps and capture time.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

RESAMPLER_DELAY_16K = 31.5  # samples at 16 kHz: (64 taps - 1) / 2, documented as 1.97 ms in resample.py


def test_ulaw_reference_table_is_the_standard_one(ox: ModuleType) -> None:
    codes = bytes(range(256))
    assert np.array_equal(ox.ulaw_decode(codes), ox.sox_ulaw_decode(codes))
    # spot values from G.711 table 2a (x4 for 16 bits): 0xFF/0x7F are +-0, 0x80 = +8031*4, 0x00 = -8031*4
    assert ox.ULAW[0xFF] == 0 and ox.ULAW[0x7F] == 0
    assert ox.ULAW[0x80] == 32124 and ox.ULAW[0x00] == -32124


@pytest.fixture(scope="module", params=["example", "calls3"])
def case(request: pytest.FixtureRequest, ox: ModuleType, example_expected: dict[str, Any],
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs transcribe --no-stt at 8 kHz and at 16 kHz on one capture; the clean RTP by destination."""
    pcap, expected = ox.capture_case(request, example_expected)
    out8 = tmp_path_factory.mktemp(f"{request.param}-8k")
    out16 = tmp_path_factory.mktemp(f"{request.param}-16k")
    for out, extra in ((out8, ["--wav-rate", "8000"]), (out16, [])):
        r = ox.transcribe(pcap, out, "--no-stt", *extra)
        assert r.returncode == 0, r.stderr
    _h, recs, _end = ox.read_pcap(pcap)
    return {"name": request.param, "pcap": pcap, "expected": expected, "out8": out8, "out16": out16,
            "rtp": ox.rtp_packets(recs)}


def test_calls_and_streams_match_the_capture(case: dict[str, Any], ox: ModuleType) -> None:
    calls = ox.load_calls(case["out8"])
    exp_calls = case["expected"]["calls"]
    assert sorted(calls) == sorted(c["call_id"] for c in exp_calls)
    for ce in exp_calls:
        doc = calls[ce["call_id"]]
        assert doc["end_reason"] == "bye" and doc["notes"] == []
        epoch_us = case["expected"]["capture_epoch"] * 1_000_000
        assert doc["start_us"] == epoch_us + round(ce["invite_time"] * 1e6)
        streams = {s["speaker"]: s for s in doc["streams"]}
        assert sorted(streams) == ["callee", "caller"]
        for spk, sd in ce["speakers"].items():
            ip, port = ox.parse_tuple(sd["rtp"]["dst"])
            st = streams[spk]
            assert st["stream_key"] == f"offline/{ip}/{port}"  # RTP keyed by where it is sent: the join
            assert (st["codec"], st["packets"], st["lost"], st["duplicates"]) == ("PCMU", sd["rtp"]["packets"], 0, 0)
            assert st["ssrc"] == int(sd["rtp"]["ssrc"], 16)
            assert st["audio_s"] == pytest.approx(sd["rtp"]["packets"] * 0.02, abs=1e-6)


def test_8k_wav_equals_independent_g711_decode_sample_for_sample(case: dict[str, Any], ox: ModuleType) -> None:
    calls = ox.load_calls(case["out8"])
    for ce in case["expected"]["calls"]:
        doc = calls[ce["call_id"]]
        for spk, sd in ce["speakers"].items():
            ref = ox.reference_pcm(case["rtp"][ox.parse_tuple(sd["rtp"]["dst"])], doc["start_us"])
            rate, pcm = ox.read_wav(ox.wav_of(case["out8"], ce["call_id"], spk))
            assert rate == 8000
            assert pcm.shape == ref.shape, f"{ce['call_id']} {spk}: {pcm.shape} vs {ref.shape} samples"
            diff = np.flatnonzero(pcm != ref)
            assert diff.size == 0, f"{ce['call_id']} {spk}: {diff.size} samples differ, first at {diff[:5]}"


def _ideal_upsample_2x(x: np.ndarray, delay: float) -> np.ndarray:
    """Band-limited (FFT) 8 -> 16 kHz interpolation of ``x``, delayed by ``delay`` 16 kHz samples."""
    n = x.shape[0]
    spec = np.fft.rfft(x.astype(np.float64))
    up = np.zeros(n + 1, dtype=complex)
    up[: spec.shape[0]] = spec
    f = np.fft.rfftfreq(2 * n, 1 / 16000)
    return np.fft.irfft(up * np.exp(-2j * np.pi * f * delay / 16000), 2 * n) * 2


def test_16k_wav_is_the_decode_resampled(case: dict[str, Any], ox: ModuleType) -> None:
    """Length exactly twice the 8 kHz reference; against an ideal band-limited 2x interpolation delayed by
    the FIR's 31.5 samples: > 60 dB in 300-3400 Hz (G.711 itself is ~38 dB SNR), > 30 dB overall (the
    rest is the FIR's 3.9-4 kHz transition band); onsets equal the 8 kHz ones + 1.97 ms, which are where the generator put each turn."""
    calls = ox.load_calls(case["out16"])
    for ce in case["expected"]["calls"]:
        doc = calls[ce["call_id"]]
        for spk, sd in ce["speakers"].items():
            ref = ox.reference_pcm(case["rtp"][ox.parse_tuple(sd["rtp"]["dst"])], doc["start_us"])
            rate, y = ox.read_wav(ox.wav_of(case["out16"], ce["call_id"], spk))
            assert rate == 16000 and y.shape[0] == 2 * ref.shape[0]
            want = _ideal_upsample_2x(ref, RESAMPLER_DELAY_16K)
            err = y.astype(np.float64) - want
            snr = 10 * np.log10((want ** 2).sum() / (err ** 2).sum())
            e_spec, w_spec = np.fft.rfft(err), np.fft.rfft(want)
            f = np.fft.rfftfreq(err.shape[0], 1 / 16000)
            band = (f >= 300) & (f <= 3400)
            snr_band = 10 * np.log10((np.abs(w_spec[band]) ** 2).sum() / (np.abs(e_spec[band]) ** 2).sum())
            assert snr > 30 and snr_band > 60, f"{ce['call_id']} {spk}: SNR {snr:.1f} dB, in band {snr_band:.1f} dB"
            on16, on8 = ox.onsets(y, 16000), ox.onsets(ref, 8000)
            assert len(on16) == len(on8) == len(sd["turns"])
            # where the generator put each turn: its offset in the stream after the stream's first packet
            # (the expected "start" is from the caller's media start; the callee sends 7 ms later)
            first_cap = min(p.cap_us for p in case["rtp"][ox.parse_tuple(sd["rtp"]["dst"])])
            for a, b, turn in zip(on16, on8, sd["turns"], strict=True):
                want_s = (first_cap - doc["start_us"]) / 1e6 + turn["start_in_stream"]
                assert abs(b - want_s) <= 0.002  # 1 ms onset frames
                assert abs(a - b) <= 0.002 + RESAMPLER_DELAY_16K / 16000
