from __future__ import annotations

import json

import numpy as np
from streams_helpers import avro_roundtrip

from streams.core.stt_protocol import Final, Partial, VoskSession, segment_id, to_segment


def test_framing() -> None:
    s = VoskSession(16000)
    assert json.loads(s.config_message()) == {"config": {"sample_rate": 16000}}
    pcm = np.array([1, -2, 256], dtype=np.int16)
    assert s.audio_message(pcm) == b"\x01\x00\xfe\xff\x00\x01"
    assert json.loads(s.eof_message()) == {"eof": 1}


def test_partial_final_and_time_mapping() -> None:
    s = VoskSession(16000)
    s.audio_message(np.zeros(16000, dtype=np.int16), start_s=2.0)  # audio 0..1 s = call 2..3 s
    s.audio_message(np.zeros(16000, dtype=np.int16), start_s=10.0)  # after a gap: audio 1..2 s = call 10..11 s
    assert s.on_message('{"partial": ""}') == []
    p = s.on_message('{"partial": "hello"}')
    assert p == [Partial("hello", 2.0, 11.0)]
    assert s.on_message('{"partial": "hello"}') == []  # repeated partial suppressed
    f = s.on_message(json.dumps({"result": [
        {"word": "hello", "start": 0.5, "end": 0.9, "conf": 0.9},
        {"word": "world", "start": 1.25, "end": 1.5, "conf": 1.0}], "text": "hello world"}))
    assert len(f) == 1 and isinstance(f[0], Final)
    fin = f[0]
    assert fin.text == "hello world"
    assert (fin.start_s, fin.end_s) == (2.5, 10.5)
    assert [w.start_s for w in fin.words] == [2.5, 10.25]
    # next partial starts after the last final's end
    assert s.on_message('{"partial": "again"}')[0].start_s == 10.5
    assert s.on_message('{"text": ""}') == []  # an empty final: the next utterance starts at the audio end
    assert s.on_message('{"partial": "more"}')[0].start_s == 11.0
    s2 = VoskSession.restore(json.loads(json.dumps(s.snapshot())))
    assert s2.call_time(1.75) == s.call_time(1.75) == 10.75


def test_segment_ids_deterministic() -> None:
    a = segment_id("s1", "cid", "caller", 1.2345, True)
    assert a == segment_id("s1", "cid", "caller", 1.2345, True)
    assert len(a) == 20 and int(a, 16) >= 0
    assert a != segment_id("s1", "cid", "caller", 1.2345, False)
    assert a != segment_id("s1", "cid", "callee", 1.2345, True)
    assert a != segment_id("s2", "cid", "caller", 1.2345, True)
    seg = to_segment(site="s1", call_id="cid", speaker="caller", role="agent",
                     result=Final("hi", (), 1.0, 2.0), engine="vosk:ws://x")
    assert seg["segment_id"] == segment_id("s1", "cid", "caller", 1.0, True)
    assert seg["is_final"] and seg["words"] == [] and seg["role"] == "agent"


def test_segment_validates_against_schema() -> None:
    seg = to_segment(site="s1", call_id="c", speaker="callee", role=None,
                     result=Partial("x", 0.0, 1.0), engine="vosk")
    assert avro_roundtrip("TranscriptSegment", seg) == seg


def test_contiguous_chunks_add_no_anchors() -> None:
    s = VoskSession(16000)
    for i in range(100):
        s.audio_message(np.zeros(1600, dtype=np.int16), start_s=5.0 + i * 0.1)
    assert len(s.snapshot()["anchor_samples"]) == 1
    assert s.call_time(9.95) == 14.95
