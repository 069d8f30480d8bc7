"""Utterance endpointing by an adaptive energy gate (pure: samples in, utterances out, no clock).

Why energy and not Silero VAD: on these 2-core machines the gate costs microseconds per 20 ms frame and
needs no model; telephony audio is band-limited speech with a steady noise floor, where a gate that tracks
the floor works. It is not robust to loud babble or music on hold: such audio forms long "utterances"
that are cut at ``max_utterance_s`` and left to Whisper's own no-speech test. The floor is the quietest
frame of the last 2 s (minimum statistics), so a steady hiss or hum never counts as speech. Times are counted in
samples of the session's input rate, so the caller maps them to seconds exactly.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from spanscribe.stt.audio import rms_dbfs


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """Endpointing parameters (seconds and dBFS)."""

    frame_s: float = 0.02
    silence_end_s: float = 0.7  # an utterance ends after this much non-speech
    max_utterance_s: float = 15.0  # ... or at this length, cut at the quietest frame of its last second
    min_speech_s: float = 0.2  # utterances with less speech than this are dropped (clicks, breaths)
    pre_roll_s: float = 0.3  # audio kept before the first speech frame (soft onsets)
    tail_s: float = 0.24  # trailing silence kept after the last speech frame
    abs_threshold_dbfs: float = -45.0  # never speech below this level
    snr_db: float = 12.0  # speech must be this far above the noise floor ...
    noise_window_s: float = 2.0  # ... the quietest frame level of this window (minimum statistics)


@dataclass(frozen=True, slots=True)
class Utterance:
    """A span of speech. ``start_sample`` counts samples since the session's first sample."""

    start_sample: int
    samples: np.ndarray  # int16, input rate
    reason: str  # "silence" | "max_length" | "flush"

    @property
    def end_sample(self) -> int:
        return self.start_sample + int(self.samples.size)


@dataclass(slots=True)
class _Open:
    start_sample: int
    frames: list[np.ndarray] = field(default_factory=list)
    speech: list[bool] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    silence_run: int = 0


class EnergySegmenter:
    """Cut a stream of int16 samples into utterances.

    ``feed(samples)`` buffers and returns the utterances completed by those samples (oldest first);
    ``flush()`` ends the stream and returns the utterance in progress, if it holds enough speech.
    Memory is bounded by ``max_utterance_s`` plus one frame.
    """

    def __init__(self, sample_rate: int, config: SegmenterConfig | None = None) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self.rate = sample_rate
        self.cfg = cfg = config or SegmenterConfig()
        self.frame_len = max(1, round(cfg.frame_s * sample_rate))
        self._silence_end = max(1, round(cfg.silence_end_s / cfg.frame_s))
        self._max_frames = max(2, round(cfg.max_utterance_s / cfg.frame_s))
        self._min_speech = max(1, round(cfg.min_speech_s / cfg.frame_s))
        self._tail = round(cfg.tail_s / cfg.frame_s)
        self._pre: deque[np.ndarray] = deque(maxlen=max(0, round(cfg.pre_roll_s / cfg.frame_s)))
        self._rest = np.zeros(0, dtype=np.int16)
        self._consumed = 0  # samples framed so far (excluding _rest)
        self._levels: deque[float] = deque(maxlen=max(1, round(cfg.noise_window_s / cfg.frame_s)))
        self._open: _Open | None = None

    # -- queries -----------------------------------------------------------------------------------
    @property
    def total_samples(self) -> int:
        """Samples fed so far (including a partial frame not yet analysed)."""
        return self._consumed + int(self._rest.size)

    @property
    def in_utterance(self) -> bool:
        return self._open is not None

    def current_span(self) -> tuple[int, int] | None:
        """(start_sample, length in samples) of the utterance in progress, without copying audio."""
        if self._open is None or not self._open.frames:
            return None
        return self._open.start_sample, len(self._open.frames) * self.frame_len

    def current(self) -> Utterance | None:
        """The utterance in progress (for partial results), or None."""
        if self._open is None or not self._open.frames:
            return None
        return Utterance(self._open.start_sample, np.concatenate(self._open.frames), "partial")

    # -- input -------------------------------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> list[Utterance]:
        """Add int16 samples; return the utterances they complete."""
        if samples.size == 0:
            return []
        buf = np.concatenate([self._rest, samples.astype(np.int16, copy=False)])
        n_frames = buf.size // self.frame_len
        out: list[Utterance] = []
        for i in range(n_frames):
            frame = buf[i * self.frame_len : (i + 1) * self.frame_len]
            u = self._frame(frame)
            if u is not None:
                out.append(u)
            self._consumed += self.frame_len
        self._rest = buf[n_frames * self.frame_len :].copy()
        return out

    def flush(self) -> Utterance | None:
        """End of stream: close the utterance in progress (with any partial frame) and reset."""
        u: Utterance | None = None
        if self._open is not None:
            if self._rest.size:
                self._open.frames.append(self._rest)
                self._open.speech.append(False)
                self._open.levels.append(-120.0)
            u = self._close(len(self._open.frames), "flush")
        self._consumed += int(self._rest.size)
        self._rest = np.zeros(0, dtype=np.int16)
        self._pre.clear()
        return u

    # -- internals ---------------------------------------------------------------------------------
    def _is_speech(self, level: float) -> bool:
        # Minimum statistics: speech has gaps between syllables within any couple of seconds, so the
        # quietest recent frame is the background. A steady hum or hiss is its own floor: never speech.
        floor = min(self._levels) if self._levels else level
        self._levels.append(level)
        return level > max(self.cfg.abs_threshold_dbfs, floor + self.cfg.snr_db)

    def _frame(self, frame: np.ndarray) -> Utterance | None:
        level = rms_dbfs(frame)
        speech = self._is_speech(level)
        op = self._open
        if op is None:
            if not speech:
                self._pre.append(frame)
                return None
            start = self._consumed - len(self._pre) * self.frame_len
            op = self._open = _Open(start)
            for f in self._pre:
                op.frames.append(f)
                op.speech.append(False)
                op.levels.append(-120.0)
            self._pre.clear()
        op.frames.append(frame)
        op.speech.append(speech)
        op.levels.append(level)
        op.silence_run = 0 if speech else op.silence_run + 1
        if op.silence_run >= self._silence_end:
            return self._close(len(op.frames), "silence")
        if len(op.frames) >= self._max_frames:
            # Cut at the quietest frame of the last second, so a word is rarely split in two.
            window = max(1, round(1.0 / self.cfg.frame_s))
            lo = max(1, len(op.frames) - window)
            cut = lo + int(np.argmin(op.levels[lo:])) + 1
            return self._close(cut, "max_length")
        return None

    def _close(self, n_frames: int, reason: str) -> Utterance | None:
        """Emit frames[:n_frames] (trailing silence trimmed to ``tail_s``); keep the rest open."""
        op = self._open
        assert op is not None
        frames, speech = op.frames[:n_frames], op.speech[:n_frames]
        rest_frames, rest_speech, rest_levels = op.frames[n_frames:], op.speech[n_frames:], op.levels[n_frames:]
        last_speech = max((i for i, s in enumerate(speech) if s), default=-1)
        keep = min(len(frames), last_speech + 1 + self._tail) if reason != "max_length" else len(frames)
        enough = sum(speech) >= self._min_speech
        u = Utterance(op.start_sample, np.concatenate(frames[:keep]), reason) if enough and keep else None
        if rest_frames:
            start = op.start_sample + sum(int(f.size) for f in frames)
            self._open = _Open(start, rest_frames, rest_speech, rest_levels)
            self._open.silence_run = 0
        else:
            self._open = None
            if reason == "silence":
                # The trailing silence becomes the pre-roll of the next utterance (the deque keeps
                # only the newest pre_roll_s of it, contiguous with the next frame).
                self._pre.extend(frames)
        return u
