"""Speech engines behind one small interface: whisper (faster-whisper), null and echo (for tests).

``transcribe(audio, rate, final=...)`` is blocking and CPU-bound: the server calls it from a worker
thread, never from the event loop. Word times are seconds from the start of ``audio``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from spanscribe.stt.audio import WHISPER_RATE_HZ, int16_to_float32, resample
from spanscribe.stt.protocol import Word

log = logging.getLogger(__name__)


class Engine(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, rate: int, *, final: bool) -> list[Word]:
        """Words of int16 ``audio`` at ``rate`` Hz. ``final=False`` asks for a cheap partial guess."""
        ...


class NullEngine:
    """Returns no words, instantly: measures the pipeline without model cost."""

    name = "null"

    def transcribe(self, audio: np.ndarray, rate: int, *, final: bool) -> list[Word]:
        return []


class EchoEngine:
    """One word per utterance, ``speech``, spanning the loud part of the audio: fast protocol tests."""

    name = "echo"

    def transcribe(self, audio: np.ndarray, rate: int, *, final: bool) -> list[Word]:
        loud = np.flatnonzero(np.abs(audio.astype(np.int32)) >= 200)
        if loud.size == 0:
            return []
        return [Word("speech", float(loud[0]) / rate, float(loud[-1] + 1) / rate, 1.0)]


class WhisperEngine:
    """faster-whisper on CPU, int8. One model instance; calls are serialised by a lock (the server
    also runs them on a single worker thread; CTranslate2 uses ``threads`` cores inside one call)."""

    name = "whisper"
    # Silence added on both sides of each utterance before decoding. Measured on the example call
    # (8 kHz mu-law, segmenter cuts): 0.5 s brought back the clipped first word ("Hi") and cut the
    # caller's WER from 0.04 to 0.00; word times are shifted back afterwards.
    pad_s = 0.5

    def __init__(self, model_dir: Path | str, *, threads: int = 2, beam_size: int = 2,
                 language: str = "en") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel  # heavy import: only when this engine is chosen

        t0 = time.perf_counter()
        self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8",
                                  cpu_threads=threads, num_workers=1)
        self.load_s = time.perf_counter() - t0
        self.beam_size = beam_size
        self.language = language
        self._lock = threading.Lock()
        log.info("whisper model loaded from %s in %.2f s (threads=%d, beam=%d)",
                 model_dir, self.load_s, threads, beam_size)

    def transcribe(self, audio: np.ndarray, rate: int, *, final: bool) -> list[Word]:
        x = int16_to_float32(audio)
        if rate != WHISPER_RATE_HZ:
            x = resample(x, rate, WHISPER_RATE_HZ)
        dur_s = x.size / WHISPER_RATE_HZ
        pad = np.zeros(round(self.pad_s * WHISPER_RATE_HZ), dtype=np.float32)
        x = np.concatenate([pad, x, pad])

        def t(sec: float) -> float:
            return min(dur_s, max(0.0, sec - self.pad_s))
        with self._lock:
            segments, _info = self.model.transcribe(
                x,
                language=self.language,
                beam_size=self.beam_size if final else 1,
                word_timestamps=final,
                condition_on_previous_text=False,
                vad_filter=False,  # the segmenter already cut the speech out
                temperature=(0.0, 0.4, 0.8) if final else 0.0,
                without_timestamps=not final,
            )
            words: list[Word] = []
            for seg in segments:  # a generator: decoding happens while iterating, under the lock
                if final and seg.words:
                    for w in seg.words:
                        token = w.word.strip()
                        if token:
                            words.append(Word(token, t(w.start), t(w.end), float(w.probability)))
                elif seg.text.strip():
                    # Partials (no word timestamps): one pseudo-word per segment.
                    words.append(Word(seg.text.strip(), t(seg.start), t(seg.end), 0.0))
        return words


def make_engine(kind: str, model: str | Path | None, *, threads: int, beam_size: int = 2) -> Engine:
    """Build the engine named ``kind`` ("whisper", "null", "echo"); whisper resolves ``model`` or
    assembles the cached default (``spanscribe.stt.model.ensure_model``)."""
    if kind == "null":
        return NullEngine()
    if kind == "echo":
        return EchoEngine()
    if kind != "whisper":
        raise ValueError(f"unknown engine {kind!r} (whisper, null, echo)")
    if model is None:
        from spanscribe.stt.model import ensure_model

        model = ensure_model()
    os.environ["HF_HUB_OFFLINE"] = "1"
    return WhisperEngine(model, threads=threads, beam_size=beam_size)
