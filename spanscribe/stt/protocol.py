"""Vosk websocket protocol for the reference STT server: parsing, replies, per-session state (pure).

Client -> server
  text   ``{"config": {"sample_rate": 8000}}``  optional, before any audio (keys: sample_rate, words,
         max_alternatives=0); no reply when accepted
  binary 16-bit little-endian mono PCM at the configured rate (default 16000); exactly one reply each
  text   ``{"eof": 1}``  end of stream: the server replies with the final result and closes (1000)

Server -> client
  ``{"partial": "..."}``                                      after a frame that ended no utterance
  ``{"text": "...", "result": [{"word","start","end","conf"}]}``  after a frame (or eof) that ended one
  ``{"error": "..."}``                                        a bad message; the session goes on
  ``{"error": "server busy: N sessions"}``                    then close 1013 (over --max-sessions)

Word times are seconds from the start of the session's audio (the first PCM sample received).
No sockets, no asyncio, no clock here: ``Session`` turns client messages into actions for the shell.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spanscribe.stt.audio import MAX_RATE_HZ, MIN_RATE_HZ, WHISPER_RATE_HZ, pcm16le_to_int16
from spanscribe.stt.segmenter import EnergySegmenter, SegmenterConfig, Utterance

DEFAULT_SAMPLE_RATE_HZ = WHISPER_RATE_HZ
CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 section 7.4.1 registry: "Try Again Later"
CONFIG_KEYS = frozenset({"sample_rate", "words", "max_alternatives"})


class ClientError(ValueError):
    """The client sent something the protocol does not allow; str(exc) is safe to send back."""


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_s: float  # seconds from the start of the utterance audio handed to the engine
    end_s: float
    conf: float


@dataclass(frozen=True, slots=True)
class Config:
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Eof:
    pass


# ------------------------------------------------------------------------------------------ parsing
def parse_text(text: str) -> Config | Eof:
    """Parse a text frame.

    Raises:
        ClientError: not JSON, not an object, unknown keys, or bad values.
    """
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ClientError(f"bad JSON: {exc.msg if isinstance(exc, json.JSONDecodeError) else 'too deep'}") from None
    if not isinstance(obj, dict):
        raise ClientError("expected a JSON object")
    if set(obj) == {"eof"}:
        if obj["eof"] not in (1, True):
            raise ClientError('"eof" must be 1')
        return Eof()
    if set(obj) == {"config"}:
        cfg = obj["config"]
        if not isinstance(cfg, dict):
            raise ClientError('"config" must be an object')
        unknown = sorted(set(cfg) - CONFIG_KEYS)
        if unknown:
            raise ClientError(f"unknown config keys: {', '.join(map(str, unknown))}")
        rate = cfg.get("sample_rate", DEFAULT_SAMPLE_RATE_HZ)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != int(rate):
            raise ClientError("sample_rate must be an integer number of Hz")
        if not MIN_RATE_HZ <= int(rate) <= MAX_RATE_HZ:
            raise ClientError(f"sample_rate {int(rate)} out of range {MIN_RATE_HZ}-{MAX_RATE_HZ}")
        if cfg.get("max_alternatives", 0) != 0:
            raise ClientError("max_alternatives > 0 is not supported")
        if "words" in cfg and not isinstance(cfg["words"], bool):
            raise ClientError('"words" must be true or false')
        return Config(int(rate))
    keys = ", ".join(sorted(map(str, obj))) or "(none)"
    raise ClientError(f"unknown message keys: {keys} (expected config or eof)")


# ------------------------------------------------------------------------------------------ replies
def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def partial_json(text: str) -> str:
    return _dumps({"partial": text})


def error_json(message: str) -> str:
    return _dumps({"error": message})


def busy_json(active: int) -> str:
    return error_json(f"server busy: {active} sessions")


def final_json(words: Sequence[Word], offset_s: float = 0.0, text: str | None = None) -> str:
    """A final result; ``offset_s`` (seconds) is added to every word time.

    ``text`` defaults to the words joined by single spaces.
    """
    result = [
        {"word": w.word, "start": round(offset_s + w.start_s, 3), "end": round(offset_s + w.end_s, 3),
         "conf": round(min(1.0, max(0.0, w.conf)), 3)}
        for w in words
    ]
    return _dumps({"text": text if text is not None else " ".join(w.word for w in words), "result": result})


def merge_finals(parts: Sequence[tuple[Sequence[Word], float]]) -> str:
    """One final result from several utterances ``(words, offset_s)`` (one reply per client frame)."""
    words = [Word(w.word, off + w.start_s, off + w.end_s, w.conf) for ws, off in parts for w in ws]
    return final_json(words)


# ------------------------------------------------------------------------------------------ session
@dataclass(frozen=True, slots=True)
class Reply:
    """Send this text frame."""

    text: str


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Transcribe these utterances (in order) and send one final built by ``merge_finals``;
    if ``close`` is set, close the connection normally afterwards."""

    utterances: tuple[Utterance, ...]
    sample_rate: int
    close: bool = False


@dataclass(frozen=True, slots=True)
class SendPartial:
    """No utterance ended: reply with the current partial text (the shell may refresh it)."""


Action = Reply | Transcribe | SendPartial


class Session:
    """State of one client session, sans I/O: ``receive(message) -> action or None``."""

    def __init__(self, segmenter_config: SegmenterConfig | None = None) -> None:
        self.sample_rate = DEFAULT_SAMPLE_RATE_HZ
        self._seg_cfg = segmenter_config
        self.segmenter: EnergySegmenter | None = None
        self.finished = False
        self.frames = 0
        self.errors = 0
        self.utterances = 0

    @property
    def audio_s(self) -> float:
        """Seconds of audio received so far."""
        return 0.0 if self.segmenter is None else self.segmenter.total_samples / self.sample_rate

    def offset_s(self, u: Utterance) -> float:
        """Session time (seconds) of the first sample of ``u``."""
        return u.start_sample / self.sample_rate

    def receive(self, message: str | bytes) -> Action | None:
        """Handle one client frame. Returns None for an accepted config (no reply)."""
        if self.finished:
            self.errors += 1
            return Reply(error_json("session finished after eof"))
        if isinstance(message, str):
            try:
                ev = parse_text(message)
            except ClientError as exc:
                self.errors += 1
                return Reply(error_json(str(exc)))
            if isinstance(ev, Config):
                if self.segmenter is not None:
                    self.errors += 1
                    return Reply(error_json("config must come before the first audio frame"))
                self.sample_rate = ev.sample_rate
                return None
            self.finished = True
            seg = self._seg()
            last = seg.flush()
            utts = (last,) if last is not None else ()
            self.utterances += len(utts)
            return Transcribe(utts, self.sample_rate, close=True)
        try:
            pcm = pcm16le_to_int16(bytes(message))
        except ValueError as exc:
            self.errors += 1
            return Reply(error_json(str(exc)))
        self.frames += 1
        done = self._seg().feed(pcm)
        if done:
            self.utterances += len(done)
            return Transcribe(tuple(done), self.sample_rate)
        return SendPartial()

    def current_span(self) -> tuple[int, int] | None:
        """(start_sample, samples) of the utterance in progress, cheap (no copy)."""
        return None if self.segmenter is None else self.segmenter.current_span()

    def current(self) -> Utterance | None:
        """The utterance in progress (a copy of its audio), for a partial result."""
        return None if self.segmenter is None else self.segmenter.current()

    def _seg(self) -> EnergySegmenter:
        if self.segmenter is None:
            self.segmenter = EnergySegmenter(self.sample_rate, self._seg_cfg)
        return self.segmenter

