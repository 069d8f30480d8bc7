"""Issue 5: the central worker with real parts (Kafka broker, STT server, ``spanscribe worker``
subprocesses). See conftest.py for the fixtures and callgen.py for the calls."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgen import Call, Turn, rtp_batches, standard_turns  # noqa: E402
from conftest import PARTITIONS, Pipeline  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@it"


def finals(doc: dict[str, Any], speaker: str) -> list[float]:
    return [s["start_s"] for s in doc["segments"] if s["speaker"] == speaker]


def assert_turns(doc: dict[str, Any], call: Call, tol_s: float = 0.15) -> None:
    """Every turn of the call is one segment of its speaker, starting where the tone starts."""
    for speaker in ("caller", "callee"):
        want = call.turn_call_times(speaker)
        got = finals(doc, speaker)
        assert len(got) == len(want), (speaker, got, want, doc["segments"])
        for g, w in zip(got, want, strict=True):
            assert abs(g - w) <= tol_s, (speaker, got, want)


def streams_by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stream_key"]: s for s in doc["streams"]}


def test_call_in_transcript_out(pipeline: Pipeline) -> None:
    call = Call(cid("basic"), turns=standard_turns(), media_s=9.0)
    pipeline.send_call(call)
    doc = pipeline.wait_call(call.call_id)
    assert doc["end_reason"] == "bye"
    assert doc["caller"] and "alice" in doc["caller"] and "bob" in doc["callee"]
    assert_turns(doc, call)
    assert all(s["text"] == "speech" for s in doc["segments"])
    counts = call.packet_counts()
    got = streams_by_key(doc)
    assert set(got) == set(counts)
    for key, n in counts.items():
        s = got[key]
        assert (s["packets"], s["lost"], s["duplicates"], s["codec"]) == (n, 0, 0, "PCMU"), s
        assert abs(s["audio_s"] - n * 0.02) < 0.05, s
    assert doc["start_us"] == call.start_us and doc["end_us"] == call.bye_us
