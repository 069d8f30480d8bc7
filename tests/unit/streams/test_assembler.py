from __future__ import annotations

import json
from typing import Any

from streams_helpers import avro_roundtrip

from streams.core.assembler import AssemblerConfig, CallAssembler
from streams.core.stt_protocol import Final, to_segment

T0 = 1_700_000_000_000_000


def ev(kind: str, ts: int, **kw: Any) -> dict[str, Any]:
    base = {"site": "s1", "call_id": "c1", "kind": kind, "ts_us": ts, "caller": None, "callee": None,
            "start_us": None, "answer_us": None, "end_reason": None, "speakers": [], "stream": None, "note": None}
    base.update(kw)
    return base


def stream(speaker: str, packets: int = 100) -> dict[str, Any]:
    return {"speaker": speaker, "stream_key": f"s1/10.0.0.{1 if speaker == 'caller' else 2}/4000", "ssrc": 5,
            "codec": "PCMU", "packets": packets, "lost": 0, "duplicates": 0, "jitter_ms": 1.5, "audio_s": 2.0}


def seg(speaker: str, start: float, text: str, final: bool = True) -> dict[str, Any]:
    return to_segment(site="s1", call_id="c1", speaker=speaker, role=None,
                      result=Final(text, (), start, start + 1.0), engine="vosk") | {"is_final": final}


def started(a: CallAssembler) -> None:
    a.on_call_event(ev("call_started", T0, caller="sip:a@x", callee="sip:b@x", start_us=T0))


def test_merge_order_dups_and_emit_when_all_speakers_ended() -> None:
    a = CallAssembler()
    started(a)
    assert a.on_segment(seg("callee", 3.0, "fine thanks")) == []
    assert a.on_segment(seg("caller", 1.0, "hello how are you")) == []
    assert a.on_segment(seg("caller", 1.0, "hello how are you")) == []  # duplicate id
    assert a.on_segment(seg("caller", 5.0, "partial", final=False)) == []
    assert a.on_segment(seg("caller", 4.5, "good")) == []
    assert a.counters["duplicate_segments"] == 1
    a.on_call_event(ev("note", T0 + 1, note="callee RTP stream is encrypted"))
    end = T0 + 10_000_000
    assert a.on_call_event(ev("call_ended", end, caller="sip:a@x", callee="sip:b@x", start_us=T0,
                              answer_us=T0 + 1_000_000, end_reason="bye", speakers=["caller", "callee"])) == []
    assert a.on_call_event(ev("stream_ended", end, stream=stream("caller"))) == []
    # a mid-call stream end (before the end) does not count for completion
    assert a.on_call_event(ev("stream_ended", end - 5_000_000, stream=stream("callee", 0))) == []
    docs = a.on_call_event(ev("stream_ended", end, stream=stream("callee")))
    assert len(docs) == 1
    d = docs[0]
    assert avro_roundtrip("CallTranscript", d) == d
    assert [(s["speaker"], s["text"]) for s in d["segments"]] == [
        ("caller", "hello how are you"), ("callee", "fine thanks"), ("caller", "good")]
    assert (d["start_us"], d["answer_us"], d["end_us"], d["end_reason"]) == (T0, T0 + 1_000_000, end, "bye")
    assert [s["speaker"] for s in d["streams"]] == ["callee", "caller"]  # zero-packet stub left out
    assert d["notes"] == ["callee RTP stream is encrypted"]
    # a late final segment re-emits the document (compacted topic: latest wins)
    late = a.on_segment(seg("callee", 8.0, "bye"))
    assert len(late) == 1 and late[0]["segments"][-1]["text"] == "bye"
    assert a.on_segment(seg("callee", 8.0, "bye")) == []


def test_timeout_emission_with_note() -> None:
    a = CallAssembler(AssemblerConfig(speaker_timeout_s=30, linger_s=60))
    started(a)
    a.on_segment(seg("caller", 1.0, "anyone there"))
    end = T0 + 5_000_000
    a.on_call_event(ev("call_ended", end, start_us=T0, end_reason="timeout", speakers=["callee", "caller"]))
    a.on_call_event(ev("stream_ended", end, stream=stream("caller")))
    assert a.expire(end + 10_000_000) == []
    docs = a.expire(end + 31_000_000)
    assert len(docs) == 1
    d = docs[0]
    assert d["end_reason"] == "timeout"
    assert d["notes"] == ["no end of the callee stream within 30 s: transcript may be incomplete"]
    assert avro_roundtrip("CallTranscript", d) == d
    assert a.expire(end + 100_000_000) == [] and a.snapshot("s1/c1") is None  # forgotten after linger


def test_orphan_call_without_end() -> None:
    a = CallAssembler(AssemblerConfig(orphan_timeout_s=100))
    a.on_segment(seg("caller", 1.0, "hi"))
    a.on_call_event(ev("stream_ended", T0, stream=stream("caller")))
    docs = a.expire(T0 + 101_000_000)
    assert len(docs) == 1 and docs[0]["end_reason"] == "timeout" and docs[0]["end_us"] == T0
    assert "the end of the call was never seen" in docs[0]["notes"]


def test_no_media_call_emits_on_end_and_snapshot_roundtrip() -> None:
    a = CallAssembler()
    started(a)
    state = json.loads(json.dumps(a.snapshot("s1/c1")))
    b = CallAssembler()
    b.restore("s1/c1", state)
    docs = b.on_call_event(ev("call_ended", T0 + 1, start_us=T0, end_reason="rejected", speakers=[]))
    assert len(docs) == 1 and docs[0]["segments"] == [] and docs[0]["end_reason"] == "rejected"
