"""Endpointing on synthetic signals: syllable-like tone bursts are "speech", zeros/low noise are silence."""
from __future__ import annotations

import numpy as np
import pytest

from spanscribe.stt.segmenter import EnergySegmenter, SegmenterConfig, Utterance

RATE = 8000


SYLLABLE_S, GAP_S = 0.20, 0.05


def tone(seconds: float, amp: int = 8000) -> np.ndarray:
    """440 Hz in 0.2 s "syllables" separated by 0.05 s dips to 1 % (speech is never a steady tone)."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    env = np.where((t % (SYLLABLE_S + GAP_S)) < SYLLABLE_S, 1.0, 0.01)
    return (amp * env * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def silence(seconds: float, noise: int = 0, seed: int = 0) -> np.ndarray:
    n = round(seconds * RATE)
    if not noise:
        return np.zeros(n, np.int16)
    return np.random.default_rng(seed).integers(-noise, noise + 1, n).astype(np.int16)


def run(seg: EnergySegmenter, signal: np.ndarray, chunk: int) -> list[Utterance]:
    out: list[Utterance] = []
    for i in range(0, signal.size, chunk):
        out += seg.feed(signal[i : i + chunk])
    last = seg.flush()
    return out + ([last] if last else [])


def spans(us: list[Utterance]) -> list[tuple[float, float, str]]:
    return [(round(u.start_sample / RATE, 2), round(u.end_sample / RATE, 2), u.reason) for u in us]


def test_two_utterances_split_by_silence_with_pre_roll_and_tail() -> None:
    sig = np.concatenate([silence(1.0), tone(2.0), silence(1.0), tone(1.0), silence(0.3)])
    us = run(EnergySegmenter(RATE), sig, 160)
    # pre-roll 0.3 s before each onset; tail 0.24 s after the last speech frame; the second one ends at
    # flush (0.3 s of trailing silence is shorter than silence_end_s), trimmed the same way.
    # Speech ends with the last syllable (2.95 s and 4.95 s, inside the 20 ms frames ending 2.96 and 4.96).
    assert spans(us) == [(0.7, 3.2, "silence"), (3.7, 5.2, "flush")]
    assert us[0].samples.size == us[0].end_sample - us[0].start_sample


@pytest.mark.parametrize("chunk", [1, 37, 160, 1600, 100_000])
def test_chunking_does_not_change_the_cut(chunk: int) -> None:
    sig = np.concatenate([silence(0.5, 30), tone(1.2), silence(0.9, 30), tone(0.6), silence(1.0, 30)])
    ref = run(EnergySegmenter(RATE), sig, 160)
    got = run(EnergySegmenter(RATE), sig, chunk)
    assert spans(got) == spans(ref)
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(got, ref, strict=True))
    # and the audio handed out is the audio fed in, at the stated positions
    for u in got:
        assert np.array_equal(u.samples, sig[u.start_sample : u.end_sample])


def test_short_pause_inside_an_utterance_does_not_split() -> None:
    sig = np.concatenate([tone(1.0), silence(0.5), tone(1.0), silence(1.0)])
    assert [u.reason for u in run(EnergySegmenter(RATE), sig, 160)] == ["silence"]


def test_clicks_shorter_than_min_speech_are_dropped() -> None:
    sig = np.concatenate([silence(0.5), tone(0.1), silence(1.0), tone(0.06), silence(1.0)])
    assert run(EnergySegmenter(RATE), sig, 160) == []


def test_max_length_cuts_long_speech_and_keeps_every_sample() -> None:
    cfg = SegmenterConfig(max_utterance_s=2.0)
    speech = tone(5.0)
    sig = np.concatenate([speech, silence(1.0)])
    us = run(EnergySegmenter(RATE, cfg), sig, 160)
    assert [u.reason for u in us][:2] == ["max_length", "max_length"]
    assert all(1.0 * RATE <= u.samples.size <= 2.0 * RATE for u in us[:2])
    # the cut lands in a gap between syllables (the quietest frames of the last second)
    assert abs(int(sig[us[0].end_sample - 1])) < 100
    for a, b in zip(us, us[1:], strict=False):
        assert a.end_sample == b.start_sample  # contiguous: nothing lost at the cut
    assert us[-1].reason == "silence"


def test_noise_floor_adapts_to_steady_background() -> None:
    # -30 dBFS-ish hiss throughout; speech 20 dB above it is still found, the hiss alone is not.
    hiss = 1000
    sig = np.concatenate([silence(3.0, hiss, 1), tone(1.0, 12000) + silence(1.0, hiss, 2),
                          silence(3.0, hiss, 3)])
    us = run(EnergySegmenter(RATE), sig, 160)
    assert len(us) == 1 and 2.6 <= us[0].start_sample / RATE <= 3.0


def test_current_and_flush_reset() -> None:
    seg = EnergySegmenter(RATE)
    assert seg.current() is None
    seg.feed(np.concatenate([silence(0.5), tone(0.5)]))
    cur = seg.current()
    assert cur is not None and cur.start_sample == round(0.2 * RATE) and seg.in_utterance
    assert seg.current_span() == (cur.start_sample, cur.samples.size)
    u = seg.flush()
    assert u is not None and u.reason == "flush"
    assert seg.current() is None and seg.current_span() is None and seg.flush() is None
    assert seg.total_samples == RATE


def test_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        EnergySegmenter(0)
