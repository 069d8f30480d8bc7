"""The server embedded in a caller's event loop (as ``spanscribe transcribe`` runs it): injected engines,
engine failures, no signal handlers taken. Loopback sockets only, no model."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal

import numpy as np

from spanscribe.stt.engine import EchoEngine
from spanscribe.stt.protocol import Word
from spanscribe.stt.server import serve_forever


class FlakyEngine:
    """Fails on the first final and on every partial; echoes otherwise."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0
        self._echo = EchoEngine()

    def transcribe(self, audio: np.ndarray, rate: int, *, final: bool) -> list[Word]:
        if final:
            self.calls += 1
        if not final or self.calls == 1:
            raise RuntimeError("simulated engine failure")
        return self._echo.transcribe(audio, rate, final=final)


def speechy(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    env = np.where((t % 0.25) < 0.2, 1.0, 0.01)
    return (8000 * env * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def _session(url: str, pcm: np.ndarray) -> list[dict]:
    from websockets.asyncio.client import connect

    out = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": 8000}}))
        data = pcm.astype("<i2").tobytes()
        for i in range(0, len(data), 3200):
            await ws.send(data[i : i + 3200])
            out.append(json.loads(await ws.recv()))
        await ws.send('{"eof": 1}')
        out += [json.loads(m) async for m in ws]
    return out


def test_embedded_server_survives_engine_failures() -> None:
    engine = FlakyEngine()
    z = np.zeros(8000, np.int16)
    pcm = np.concatenate([z, speechy(1.0, 8000), z, speechy(1.0, 8000), z])

    async def main() -> tuple[list[dict], object]:
        handler_before = signal.getsignal(signal.SIGINT)
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()
        ready: asyncio.Future[str] = loop.create_future()
        args = argparse.Namespace(host="127.0.0.1", port=0, max_sessions=2)
        task = asyncio.create_task(serve_forever(args, stop, engine=engine, ready=ready))
        url = await asyncio.wait_for(ready, 10)
        msgs = await _session(url, pcm)
        stop.set_result(None)
        await asyncio.wait_for(task, 10)
        assert signal.getsignal(signal.SIGINT) is handler_before
        return msgs, loop

    msgs, _ = asyncio.run(main())
    finals = [m for m in msgs if "text" in m]
    # first utterance: the engine failed -> an empty final (the session goes on); second: echoed
    assert [f["text"] for f in finals if f["result"] or f["text"]] == ["speech"]
    assert engine.calls == 2
    assert "error" not in json.dumps(msgs)
