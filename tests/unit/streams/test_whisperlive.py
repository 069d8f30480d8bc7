"""WhisperLive framing: config, float32 audio, END_OF_AUDIO, finals once, partials, call-time mapping."""
from __future__ import annotations

import json

import numpy as np
import pytest

from streams.core.stt_protocol import Final, Partial
from streams.core.whisperlive import END_OF_AUDIO, WhisperLiveSession


def test_config_and_audio_framing() -> None:
    s = WhisperLiveSession(uid="u1")
    cfg = json.loads(s.config_message())
    assert cfg == {"uid": "u1", "language": "en", "task": "transcribe", "model": "small", "use_vad": True}
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    data = np.frombuffer(s.audio_message(pcm, start_s=2.0), dtype="<f4")
    assert data.tolist() == [0.0, 0.5, -1.0, pytest.approx(32767 / 32768)]
    assert s.eof_message() == END_OF_AUDIO
    assert s.sent_s == 4 / 16000


def test_rejects_other_rates() -> None:
    with pytest.raises(ValueError):
        WhisperLiveSession(sample_rate=8000)


def test_finals_emitted_once_and_mapped_to_call_time() -> None:
    s = WhisperLiveSession()
    s.audio_message(np.zeros(16000 * 10, dtype=np.int16), start_s=5.0)  # audio 0..10 s = call 5..15 s
    assert s.on_message(json.dumps({"uid": "spanscribe", "message": "SERVER_READY", "backend": "faster_whisper"})) == []
    assert s.ready
    r1 = s.on_message(json.dumps({"segments": [{"start": "0.500", "end": "2.000", "text": " hello", "completed": False}]}))
    assert r1 == [Partial("hello", 5.5, 7.0)]
    r2 = s.on_message(json.dumps({"segments": [
        {"start": "0.500", "end": "2.000", "text": " hello there", "completed": True},
        {"start": "3.000", "end": "4.000", "text": " how", "completed": False}]}))
    assert r2 == [Final("hello there", (), 5.5, 7.0), Partial("how", 8.0, 9.0)]
    r3 = s.on_message(json.dumps({"segments": [
        {"start": "0.500", "end": "2.000", "text": " hello there", "completed": True},
        {"start": "3.000", "end": "4.500", "text": " how are you", "completed": True}]}))
    assert r3 == [Final("how are you", (), 8.0, 9.5)]


def test_servers_without_completed_flag_finalise_earlier_segments() -> None:
    s = WhisperLiveSession()
    s.audio_message(np.zeros(16000 * 5, dtype=np.int16), start_s=0.0)
    out = s.on_message(json.dumps({"segments": [{"start": "0", "end": "1", "text": "one"},
                                                {"start": "1.5", "end": "2", "text": "two"}]}))
    assert out == [Final("one", (), 0.0, 1.0), Partial("two", 1.5, 2.0)]


def test_errors_and_garbage() -> None:
    s = WhisperLiveSession()
    assert s.on_message(json.dumps({"uid": "x", "status": "WAIT", "message": 3.5})) == []
    assert s.error == "WAIT: 3.5"
    assert s.on_message(json.dumps({"segments": [{"start": "x"}, 5]})) == []
    with pytest.raises(ValueError):
        s.on_message("[1, 2]")
