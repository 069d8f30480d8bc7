"""`spanscribe tail` against a real broker: readable lines, JSON lines, filters, partials hidden."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas.codec import AvroCodec
from schemas.examples import example_records
from spanscribe.config import topic

pytestmark = pytest.mark.integration


def _produce(settings: dict[str, Any], segs: list[dict[str, Any]]) -> None:
    p = Producer({"bootstrap.servers": settings["bootstrap_servers"]})
    codec = AvroCodec("TranscriptSegment")
    for s in segs:
        p.produce(topic(settings, "transcripts"), key=f"{s['site']}/{s['call_id']}".encode(), value=codec.encode(s))
    assert p.flush(30) == 0


def _tail(settings: dict[str, Any], *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "spanscribe", "tail", "--bootstrap-servers",
                           settings["bootstrap_servers"], "--topic-prefix", settings["topic_prefix"],
                           "--from-beginning", "--timeout-s", "8", *extra],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_tail_segments_text_json_and_filters(kafka_settings: dict[str, Any]) -> None:
    base = example_records()["TranscriptSegment"]
    segs = [dict(base, call_id="c1", text="first words", start_s=1.0),
            dict(base, call_id="c1", text="not final yet", is_final=False, start_s=2.0),
            dict(base, call_id="c2", text="other call", speaker="caller", role=None, start_s=3.0)]
    _produce(kafka_settings, segs)
    out = _tail(kafka_settings, "--count", "2")
    # two calls on different partitions: no order between them
    assert sorted(out.splitlines()) == ["[demo/c1]    1.00s customer: first words",
                                        "[demo/c2]    3.00s   caller: other call"]
    out = _tail(kafka_settings, "--json", "--call-id", "c1", "--partials", "--count", "2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["first words", "not final yet"]
    assert all(r["call_id"] == "c1" for r in rows)


def test_tail_calls(kafka_settings: dict[str, Any]) -> None:
    call = example_records()["CallTranscript"]
    p = Producer({"bootstrap.servers": kafka_settings["bootstrap_servers"]})
    p.produce(topic(kafka_settings, "calls"), key=b"demo/example-1", value=AvroCodec("CallTranscript").encode(call))
    p.flush(30)
    out = _tail(kafka_settings, "--calls", "--count", "1")
    assert out.splitlines()[0].startswith("=== call demo/example-1  sip:alice@10.0.0.10 -> sip:bob@10.0.0.20  20.0s")
    assert "customer: hello there" in out
