"""Protocol conformance of the real server process with the fast engines (echo, null): no model needed.

The echo engine answers one word, "speech", spanning the loud part of each utterance, so word times can
be checked against the example's known turn times without any recognition cost.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from spanscribe.stt.audio import resample

Vosk = Callable[..., Awaitable[Any]]


@pytest.mark.parametrize("rate", [8000, None])  # 8 kHz with config, and 16 kHz (resampled) by default
def test_echo_session_conformance(start_server: Callable[..., Any], vosk: Vosk, call_audio: Any,
                                  rate: int | None) -> None:
    srv = start_server("echo")
    spk = "callee"
    pcm = call_audio.pcm8k[spk]
    if rate is None:
        pcm = np.round(resample(pcm, 8000, 16000)).clip(-32768, 32767).astype(np.int16)
    res = asyncio.run(vosk(srv.url, pcm, rate))
    assert res.close_code == 1000
    assert set(res.replies_per_frame) == {1}  # exactly one reply per audio frame
    assert res.errors == []
    assert all(set(m) == {"partial"} or set(m) == {"text", "result"} for m in res.messages)
    assert "text" in res.messages[-1]  # eof is answered by a final, then the server closes
    turns = call_audio.expected["speakers"][spk]["turns"]
    words = res.words
    assert [w["word"] for w in words] == ["speech"] * len(turns)
    for w, t in zip(words, turns, strict=True):
        # times are seconds of session audio: they land on the turn's own start/end (20 ms framing,
        # and the mu-law/resampler's quiet edges)
        assert w["start"] == pytest.approx(t["start_in_stream"], abs=0.03)
        assert w["end"] == pytest.approx(t["end_in_stream"], abs=0.03)
        assert w["conf"] == 1.0


def test_malformed_frames_get_errors_and_the_session_survives(start_server: Callable[..., Any], vosk: Vosk,
                                                              call_audio: Any) -> None:
    srv = start_server("echo")
    bad: list[str | bytes] = [b"\x00\x01\x02", "this is not json", '{"sample_rate": 8000}',
                              '{"config": {"sample_rate": 8000, "foo": 1}}']
    res = asyncio.run(vosk(srv.url, call_audio.pcm8k["caller"], 8000, before=bad,
                           inject={30: [b"\x01", '{"config": {"sample_rate": 16000}}', "[]"]}))
    assert len(res.errors) == 7
    assert any("odd byte count" in e for e in res.errors)
    assert any("bad JSON" in e for e in res.errors)
    assert any("unknown message keys: sample_rate" in e for e in res.errors)
    assert any("unknown config keys: foo" in e for e in res.errors)
    assert any("before the first audio frame" in e for e in res.errors)
    assert len(res.words) == 2 and res.close_code == 1000  # both caller turns still transcribed at 8 kHz


def test_null_engine_and_eof_without_audio(start_server: Callable[..., Any], vosk: Vosk, call_audio: Any) -> None:
    srv = start_server("null")
    res = asyncio.run(vosk(srv.url, call_audio.pcm8k["caller"], 8000))
    assert res.text == "" and res.words == [] and res.close_code == 1000
    assert len(res.finals) >= 1 and res.partials and set(res.partials) == {""}
    empty = asyncio.run(vosk(srv.url, np.zeros(0, np.int16), 8000))
    assert empty.messages == [{"text": "", "result": []}] and empty.close_code == 1000


async def _busy(url: str, cap: int) -> tuple[list[Any], float]:
    holders = [await connect(url) for _ in range(cap)]
    try:
        for ws in holders:  # each is a live session: it answers a frame
            await ws.send(b"\x00\x00" * 160)
            assert "partial" in json.loads(await asyncio.wait_for(ws.recv(), 10))
        t0 = time.monotonic()
        extra = await connect(url)
        msgs = []
        try:  # error, then the server closes (1013 ends iteration with ConnectionClosedError): no hang
            while True:
                msgs.append(json.loads(await asyncio.wait_for(extra.recv(), 10)))
        except ConnectionClosed:
            pass
        elapsed = time.monotonic() - t0
        got = [msgs, extra.close_code, extra.close_reason]
    finally:
        for ws in holders:
            await ws.close()
    # capacity comes back once the holders are gone
    for _ in range(50):
        async with connect(url) as ws:
            await ws.send(b"\x00\x00")
            try:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            except ConnectionClosed:
                reply = {}
        if "partial" in reply:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("server stayed busy after all sessions closed")
    return got, elapsed


def test_max_sessions_cap_answers_busy_and_closes_1013(start_server: Callable[..., Any]) -> None:
    srv = start_server("echo", 2)
    (msgs, code, reason), elapsed = asyncio.run(_busy(srv.url, 2))
    assert msgs == [{"error": "server busy: 2 sessions"}]
    assert code == 1013 and reason == "server busy"
    assert elapsed < 5
    log = srv.log()
    assert "refusing a session" in log and "session 1 open" in log


def test_logs_hold_no_transcript(start_server: Callable[..., Any], vosk: Vosk, call_audio: Any) -> None:
    srv = start_server("echo")
    res = asyncio.run(vosk(srv.url, call_audio.pcm8k["caller"], 8000))
    assert res.words
    srv.proc.terminate()
    srv.proc.wait(timeout=15)
    log = srv.log()
    assert "closed (code 1000)" in log and "2 utterances" in log
    assert "speech" not in log.replace("speech_", "")  # the echo word never reaches the log
