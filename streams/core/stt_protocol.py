"""Vosk server websocket protocol, sans-I/O: what to send, how to read replies, segment records.

Vosk (alphacep/vosk-server ``websocket/asr_server.py``): the client sends a text
``{"config": {"sample_rate": R}}``, then binary frames of 16-bit little-endian mono PCM, then a text
``{"eof" : 1}``. The server answers every frame with ``{"partial": "..."}`` or, at an utterance end,
``{"result": [{"word", "start", "end", "conf"}...], "text": "..."}`` (times in seconds of audio fed).

:class:`VoskSession` maps those audio-relative times to call time (seconds from call start) through
anchors: each :meth:`VoskSession.audio_message` may say where in call time its first sample lies, so
word times stay right across gaps, resends and streams that start late.
"""
from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Final", "Partial", "SttResult", "VoskSession", "Word", "segment_id", "to_segment"]


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; times in seconds from call start."""

    word: str
    start_s: float
    end_s: float
    conf: float


@dataclass(frozen=True, slots=True)
class Partial:
    """A provisional hypothesis of the utterance in progress (may change)."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Final:
    """A final utterance with word timings (seconds from call start)."""

    text: str
    words: tuple[Word, ...]
    start_s: float
    end_s: float


SttResult = Partial | Final


class VoskSession:
    """Framing and time mapping for one STT session (one call speaker).

    Args:
        sample_rate: PCM rate sent to the server (Hz), normally 16000.
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self._samples = 0  # samples sent so far
        self._anchor_samples: list[int] = [0]
        self._anchor_call_s: list[float] = [0.0]
        self._utt_start_samples = 0  # audio position after the last final result
        self._last_partial = ""

    # -- outgoing -------------------------------------------------------------------------------
    def config_message(self, sample_rate: int | None = None) -> str:
        """The opening text frame."""
        return json.dumps({"config": {"sample_rate": sample_rate or self.sample_rate}})

    def audio_message(self, pcm: npt.NDArray[np.int16], start_s: float | None = None) -> bytes:
        """A binary frame of int16 little-endian PCM.

        ``start_s`` (seconds from call start of the first sample) anchors audio time to call time;
        None means the audio continues the previous frame.
        """
        if start_s is not None and (self._samples == 0 or abs(self.call_time(self.sent_s) - start_s) > 0.0005):
            # a new anchor only where the audio does not simply continue (keeps the list short)
            if self._anchor_samples[-1] == self._samples:
                self._anchor_call_s[-1] = float(start_s)
            else:
                self._anchor_samples.append(self._samples)
                self._anchor_call_s.append(float(start_s))
        self._samples += int(pcm.shape[0])
        return np.asarray(pcm, dtype="<i2").tobytes()

    def eof_message(self) -> str:
        """The closing text frame (the server then sends the last final result)."""
        return '{"eof" : 1}'

    # -- time mapping ---------------------------------------------------------------------------
    def call_time(self, audio_s: float) -> float:
        """Call time (seconds from call start) of a position ``audio_s`` seconds into the sent audio."""
        pos = audio_s * self.sample_rate
        i = bisect.bisect_right(self._anchor_samples, pos) - 1
        i = max(i, 0)
        return self._anchor_call_s[i] + (pos - self._anchor_samples[i]) / self.sample_rate

    @property
    def sent_s(self) -> float:
        """Seconds of audio sent so far."""
        return self._samples / self.sample_rate

    # -- incoming -------------------------------------------------------------------------------
    def on_message(self, text: str) -> list[SttResult]:
        """Parse one server text message. Returns zero or one result; empty texts yield nothing.

        Raises:
            ValueError: the message is not JSON or not an object.
        """
        msg = json.loads(text)
        if not isinstance(msg, dict):
            raise ValueError("Vosk: message is not a JSON object")
        utt_start = self.call_time(self._utt_start_samples / self.sample_rate)
        if "partial" in msg:
            t = str(msg.get("partial") or "").strip()
            if not t or t == self._last_partial:
                return []
            self._last_partial = t
            return [Partial(t, round(utt_start, 3), round(self.call_time(self.sent_s), 3))]
        if "result" in msg or "text" in msg:
            t = str(msg.get("text") or "").strip()
            words = []
            for w in msg.get("result") or []:
                if not isinstance(w, dict):
                    continue
                words.append(Word(str(w.get("word", "")), round(self.call_time(float(w.get("start", 0.0))), 3),
                                  round(self.call_time(float(w.get("end", 0.0))), 3), float(w.get("conf", 1.0))))
            self._last_partial = ""
            if words:
                end_audio = float((msg.get("result") or [{}])[-1].get("end", self.sent_s))
                self._utt_start_samples = max(self._utt_start_samples, int(round(end_audio * self.sample_rate)))
            else:
                self._utt_start_samples = self._samples
            if not t:
                return []
            start = words[0].start_s if words else round(utt_start, 3)
            end = words[-1].end_s if words else round(self.call_time(self.sent_s), 3)
            return [Final(t, tuple(words), start, end)]
        return []

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"rate": self.sample_rate, "samples": self._samples, "anchor_samples": list(self._anchor_samples),
                "anchor_call_s": list(self._anchor_call_s), "utt": self._utt_start_samples,
                "last_partial": self._last_partial}

    @classmethod
    def restore(cls, state: dict[str, Any]) -> VoskSession:
        s = cls(int(state["rate"]))
        s._samples = int(state["samples"])
        s._anchor_samples = [int(v) for v in state["anchor_samples"]]
        s._anchor_call_s = [float(v) for v in state["anchor_call_s"]]
        s._utt_start_samples = int(state["utt"])
        s._last_partial = str(state["last_partial"])
        return s


def segment_id(site: str, call_id: str, speaker: str, start_s: float, is_final: bool) -> str:
    """Deterministic segment id: sha1 over site, Call-ID, speaker, start (ms) and finality; 20 hex chars."""
    key = f"{site}\x00{call_id}\x00{speaker}\x00{int(round(start_s * 1000))}\x00{1 if is_final else 0}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


def to_segment(*, site: str, call_id: str, speaker: str, role: str | None, result: SttResult,
               engine: str) -> dict[str, Any]:
    """A TranscriptSegment Avro dict for one result."""
    is_final = isinstance(result, Final)
    words = ([{"word": w.word, "start_s": w.start_s, "end_s": w.end_s, "conf": w.conf} for w in result.words]
             if isinstance(result, Final) else [])
    return {
        "segment_id": segment_id(site, call_id, speaker, result.start_s, is_final),
        "site": site, "call_id": call_id, "speaker": speaker, "role": role, "is_final": is_final,
        "start_s": float(result.start_s), "end_s": float(result.end_s), "text": result.text,
        "words": words, "engine": engine,
    }
