"""README's first command, for real: local Kafka broker, reference STT server (whisper-base), a Faust
worker and the edge capturer on the example call; the printed transcript must match what was spoken.

Thresholds come from docs/stt-server.md: the engine run directly on each party's 8 kHz mu-law audio
scores WER 0.04 (caller) and 0.21 (callee: espeak's female voice saying "Acme ... Anna"); through the
server 0.00 and 0.24. We allow about 0.1 above that: one lost turn (> 0.4) fails.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spanscribe.kafka.local import free_port
from spanscribe.stt.wer import wer

pytestmark = [pytest.mark.integration, pytest.mark.stt, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\s+(\d+\.\d+)-\s*(\d+\.\d+)s\s+(\w+): (.*)$")


def test_demo_prints_the_call_transcript(tmp_path: Path) -> None:
    expected = json.loads((ROOT / "examples" / "call-g711.expected.json").read_text())["calls"][0]
    proc = subprocess.run([sys.executable, "-m", "spanscribe", "demo", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "SPANSCRIBE_DEMO_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f"=== call demo/{expected['call_id']}" in out
    assert "ended: bye" in out
    said: dict[str, list[str]] = {"customer": [], "agent": []}
    starts: dict[str, list[float]] = {"customer": [], "agent": []}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            said[m.group(3)].append(m.group(4))
            starts[m.group(3)].append(float(m.group(1)))
    # the INVITE comes from the customer (caller); "support" is the agent (callee)
    caller_wer = wer(expected["speakers"]["caller"]["text"], " ".join(said["customer"]))
    callee_wer = wer(expected["speakers"]["callee"]["text"], " ".join(said["agent"]))
    assert caller_wer <= 0.10, (caller_wer, said)
    assert callee_wer <= 0.35, (callee_wer, said)
    # every turn is found, near where it was spoken (segment start vs the turn's start)
    for speaker, role in (("caller", "customer"), ("callee", "agent")):
        turns = [t["start"] for t in expected["speakers"][speaker]["turns"]]
        assert len(starts[role]) == len(turns)
        for got, want in zip(starts[role], turns, strict=True):
            assert abs(got - want) < 1.0, (speaker, got, want)
    assert re.search(r"stream caller PCMU\s+packets 1240 lost 0", out)
    assert re.search(r"stream callee PCMU\s+packets 1240 lost 0", out)
    assert "done in" in proc.stderr
