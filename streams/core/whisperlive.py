"""WhisperLive websocket protocol (collabora/WhisperLive), sans-I/O, behind the same small interface as
:class:`streams.core.stt_protocol.VoskSession`, so the STT pool can speak either.

Protocol (whisper_live/client.py): the client opens with a JSON text frame
``{"uid", "language", "task": "transcribe", "model", "use_vad"}``; the server answers
``{"uid", "message": "SERVER_READY", "backend"}`` (or ``{"uid", "status": "WAIT"|"ERROR", "message"}``);
the client streams binary frames of float32 mono PCM at 16 kHz; the server sends
``{"uid", "segments": [{"start": "0.000", "end": "2.100", "text": "...", "completed": true}, ...]}``
repeating recent segments each time (times are seconds of audio received, as strings); the client ends
with the binary frame ``END_OF_AUDIO``. Completed segments are finals (emitted once each, in order);
the last incomplete one is a partial. Servers without ``completed`` mark nothing final until the next
segment starts, so an earlier segment is treated as final once a later one exists.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.core.stt_protocol import Final, Partial, SttResult, VoskSession

__all__ = ["END_OF_AUDIO", "WhisperLiveSession"]

END_OF_AUDIO = b"END_OF_AUDIO"


class WhisperLiveSession:
    """Framing and time mapping for one WhisperLive session (one call speaker).

    Time mapping (audio seconds -> call seconds) reuses VoskSession's anchors.
    """

    SAMPLE_RATE = 16000

    def __init__(self, sample_rate: int = 16000, uid: str = "spanscribe", language: str = "en",
                 model: str = "small", use_vad: bool = True) -> None:
        if sample_rate != self.SAMPLE_RATE:
            raise ValueError("WhisperLive takes 16 kHz audio; resample before sending")
        self.uid = uid
        self.language = language
        self.model = model
        self.use_vad = use_vad
        self._clock = VoskSession(sample_rate)  # only its call-time anchors are used
        self._final_until_s = -1.0              # audio time up to which finals were emitted
        self._last_partial = ""
        self.ready = False
        self.error: str | None = None

    @property
    def sample_rate(self) -> int:
        return self.SAMPLE_RATE

    def config_message(self, sample_rate: int | None = None) -> str:
        return json.dumps({"uid": self.uid, "language": self.language, "task": "transcribe",
                           "model": self.model, "use_vad": self.use_vad})

    def audio_message(self, pcm: npt.NDArray[np.int16], start_s: float | None = None) -> bytes:
        """float32 little-endian in [-1, 1) for int16 ``pcm``; ``start_s`` anchors audio to call time."""
        self._clock.audio_message(pcm, start_s)
        return (np.asarray(pcm, dtype=np.float32) / 32768.0).astype("<f4").tobytes()

    def eof_message(self) -> bytes:
        return END_OF_AUDIO

    def call_time(self, audio_s: float) -> float:
        return self._clock.call_time(audio_s)

    @property
    def sent_s(self) -> float:
        return self._clock.sent_s

    def on_message(self, text: str) -> list[SttResult]:
        """Parse one server message. Raises ValueError if it is not a JSON object."""
        msg: Any = json.loads(text)
        if not isinstance(msg, dict):
            raise ValueError("WhisperLive: message is not a JSON object")
        if msg.get("message") == "SERVER_READY":
            self.ready = True
            return []
        if msg.get("status") in ("ERROR", "WAIT"):
            self.error = f"{msg.get('status')}: {msg.get('message')}"
            return []
        segs = msg.get("segments")
        if not isinstance(segs, list):
            return []
        out: list[SttResult] = []
        parsed = []
        for seg in segs:
            if not isinstance(seg, dict):
                continue
            try:
                start, end = float(seg.get("start", 0.0)), float(seg.get("end", 0.0))
            except (TypeError, ValueError):
                continue
            parsed.append((start, end, str(seg.get("text") or "").strip(), seg.get("completed")))
        for i, (start, end, words, completed) in enumerate(parsed):
            is_last = i == len(parsed) - 1
            final = bool(completed) if completed is not None else not is_last
            if final:
                if start < self._final_until_s - 1e-3 or not words:
                    continue  # already emitted (the server repeats recent segments)
                self._final_until_s = end
                self._last_partial = ""
                out.append(Final(words, (), round(self.call_time(start), 3), round(self.call_time(end), 3)))
            elif is_last and words and words != self._last_partial and start >= self._final_until_s - 1e-3:
                self._last_partial = words
                out.append(Partial(words, round(self.call_time(start), 3), round(self.call_time(end), 3)))
        return out
