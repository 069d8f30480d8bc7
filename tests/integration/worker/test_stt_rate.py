"""The worker with ``stt.sample_rate: 8000`` (G.711's own rate, no resampling): the audio it sends is
at the rate its STT sessions announce, so the turns land at their times (audio at 16 kHz announced as
8 kHz would put every turn at twice its time). See conftest.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgen import Call, standard_turns  # noqa: E402
from conftest import Pipeline  # noqa: E402
from test_worker import assert_turns, cid  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKER_ENV = {"SPANSCRIBE_STT__SAMPLE_RATE": "8000"}


def test_stt_at_8khz(pipeline: Pipeline) -> None:
    call = Call(cid("rate8k"), turns=standard_turns(), media_s=9.0)
    pipeline.send_call(call)
    doc = pipeline.wait_call(call.call_id)
    assert doc["end_reason"] == "bye"
    assert_turns(doc, call)
    assert all(abs(s["audio_s"] - s["packets"] * 0.02) < 0.05 for s in doc["streams"]), doc["streams"]
    # the STT server measured the audio at the announced rate: as long as the media, not twice it
    import re
    import time

    media = max(s["packets"] for s in doc["streams"]) * 0.02
    deadline = time.monotonic() + 10
    closed: list[tuple[float, int]] = []
    while time.monotonic() < deadline and len(closed) < 2:
        closed = [(float(a), int(r)) for a, r in
                  re.findall(r"closed \(code \d+\): ([0-9.]+) s audio at (\d+) Hz", pipeline.stt.log())]
        time.sleep(0.2)
    assert len(closed) >= 2, pipeline.stt.log()[-2000:]
    for audio_s, rate in closed[-2:]:
        assert rate == 8000 and abs(audio_s - media) < 0.5, (closed, media)
