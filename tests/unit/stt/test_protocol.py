"""Vosk protocol framing and the sans-I/O session (no sockets)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spanscribe.stt.protocol import (
    ClientError,
    Config,
    Eof,
    Reply,
    SendPartial,
    Session,
    Transcribe,
    Word,
    busy_json,
    error_json,
    final_json,
    merge_finals,
    parse_text,
    partial_json,
)


def test_parse_eof_and_config() -> None:
    assert parse_text('{"eof" : 1}') == Eof()  # the spacing the Vosk sample clients send
    assert parse_text('{"config": {"sample_rate": 8000}}') == Config(8000)
    assert parse_text('{"config": {"sample_rate": 8000.0, "words": true, "max_alternatives": 0}}') == Config(8000)
    assert parse_text('{"config": {}}') == Config(16000)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "bad JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "unknown message keys: \\(none\\)"),
        ('{"eof": 1, "x": 2}', "unknown message keys: eof, x"),
        ('{"hello": 1}', "unknown message keys: hello"),
        ('{"eof": 0}', '"eof" must be 1'),
        ('{"config": 5}', '"config" must be an object'),
        ('{"config": {"sample_rate": 16000, "grammar": []}}', "unknown config keys: grammar"),
        ('{"config": {"sample_rate": "8000"}}', "integer number of Hz"),
        ('{"config": {"sample_rate": true}}', "integer number of Hz"),
        ('{"config": {"sample_rate": 8000.5}}', "integer number of Hz"),
        ('{"config": {"sample_rate": 4000}}', "out of range"),
        ('{"config": {"sample_rate": 96000}}', "out of range"),
        ('{"config": {"max_alternatives": 3}}', "not supported"),
        ('{"config": {"words": "yes"}}', '"words" must be'),
        ("[" * 100_000, "bad JSON|too deep"),
    ],
)
def test_parse_rejects(text: str, match: str) -> None:
    with pytest.raises(ClientError, match=match):
        parse_text(text)


def test_reply_builders() -> None:
    assert json.loads(partial_json("hel")) == {"partial": "hel"}
    assert json.loads(error_json("bad")) == {"error": "bad"}
    assert json.loads(busy_json(8)) == {"error": "server busy: 8 sessions"}
    words = [Word("Hello,", 0.1, 0.4, 0.91234), Word("world.", 0.5, 0.9, 1.2)]
    assert json.loads(final_json(words, offset_s=10.0)) == {
        "text": "Hello, world.",
        "result": [
            {"word": "Hello,", "start": 10.1, "end": 10.4, "conf": 0.912},
            {"word": "world.", "start": 10.5, "end": 10.9, "conf": 1.0},
        ],
    }
    assert json.loads(final_json([])) == {"text": "", "result": []}
    merged = json.loads(merge_finals([([Word("a", 0.0, 0.5, 1.0)], 1.0), ([], 3.0), ([Word("b", 0.2, 0.4, 1.0)], 5.0)]))
    assert merged["text"] == "a b" and [w["start"] for w in merged["result"]] == [1.0, 5.2]
    assert "é" in final_json([Word("café", 0, 1, 1)])  # UTF-8 text frames, not \\u escapes


def tone_bytes(seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    env = np.where((t % 0.25) < 0.2, 1.0, 0.01)
    return (8000 * env * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def silence_bytes(seconds: float, rate: int) -> bytes:
    return bytes(2 * round(seconds * rate))


def test_session_flow_config_audio_final_eof() -> None:
    s = Session()
    assert s.receive('{"config": {"sample_rate": 8000}}') is None  # accepted silently, like Vosk
    assert isinstance(s.receive(silence_bytes(0.5, 8000)), SendPartial)
    assert isinstance(s.receive(tone_bytes(1.0, 8000)), SendPartial)
    assert s.current() is not None
    act = s.receive(silence_bytes(1.0, 8000))  # 0.7 s of silence ends the utterance
    assert isinstance(act, Transcribe) and not act.close and act.sample_rate == 8000
    (u,) = act.utterances
    assert s.offset_s(u) == pytest.approx(0.2)  # 0.5 s lead minus 0.3 s pre-roll
    assert isinstance(s.receive(tone_bytes(0.5, 8000)), SendPartial)
    act = s.receive('{"eof": 1}')
    assert isinstance(act, Transcribe) and act.close and len(act.utterances) == 1
    assert s.audio_s == pytest.approx(3.0) and s.utterances == 2 and s.frames == 4
    # after eof everything is an error, never a crash
    late = s.receive(b"\x00\x00")
    assert isinstance(late, Reply) and "finished" in json.loads(late.text)["error"]


def test_session_eof_without_speech_gives_empty_final() -> None:
    s = Session()
    assert isinstance(s.receive(silence_bytes(0.3, 16000)), SendPartial)
    act = s.receive('{"eof": 1}')
    assert isinstance(act, Transcribe) and act.close and act.utterances == ()
    s2 = Session()  # eof before any audio at all
    act2 = s2.receive('{"eof": 1}')
    assert isinstance(act2, Transcribe) and act2.utterances == () and s2.audio_s == 0.0


def test_session_survives_bad_frames() -> None:
    s = Session()
    for bad in (b"\x01\x02\x03", "nope", '{"foo": 1}', '{"config": {"sample_rate": 1}}'):
        act = s.receive(bad)
        assert isinstance(act, Reply) and "error" in json.loads(act.text)
    assert s.errors == 4
    assert s.receive('{"config": {"sample_rate": 8000}}') is None
    assert isinstance(s.receive(silence_bytes(0.1, 8000)), SendPartial)
    late = s.receive('{"config": {"sample_rate": 16000}}')
    assert isinstance(late, Reply) and "before the first audio" in late.text
    assert s.sample_rate == 8000 and s.errors == 5
    assert isinstance(s.receive(b""), SendPartial)  # an empty frame is valid (0 samples)
