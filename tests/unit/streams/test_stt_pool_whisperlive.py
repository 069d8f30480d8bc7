"""The STT pool speaking WhisperLive to a small in-process server that follows collabora/WhisperLive's
protocol: JSON options first, SERVER_READY, float32 audio, repeated segments with `completed`,
END_OF_AUDIO (the server does not close by itself)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from websockets.asyncio.server import serve

from streams.core.stt_protocol import Final
from streams.stt_pool import SttPool


async def _fake_whisperlive(ws: Any, log: dict[str, Any]) -> None:
    opts = json.loads(await ws.recv())
    log["options"] = opts
    await ws.send(json.dumps({"uid": opts["uid"], "message": "SERVER_READY", "backend": "faster_whisper"}))
    received = 0
    async for msg in ws:
        if msg == b"END_OF_AUDIO":
            log["eof"] = True
            secs = received / 16000
            await ws.send(json.dumps({"uid": opts["uid"], "segments": [
                {"start": "0.000", "end": "1.000", "text": " hello", "completed": True},
                {"start": "1.000", "end": f"{secs:.3f}", "text": " world", "completed": True}]}))
            continue  # like WhisperLive: stays open
        assert isinstance(msg, bytes)
        log.setdefault("dtype_ok", True)
        arr = np.frombuffer(msg, dtype="<f4")
        log["dtype_ok"] &= bool(np.all(np.abs(arr) <= 1.0))
        received += arr.size
        await ws.send(json.dumps({"uid": opts["uid"], "segments": [
            {"start": "0.000", "end": "1.000", "text": " hello", "completed": received >= 16000}]}))


def test_pool_speaks_whisperlive() -> None:
    async def main() -> tuple[list[Any], dict[str, Any]]:
        log: dict[str, Any] = {}
        results: list[Any] = []
        async with serve(lambda ws: _fake_whisperlive(ws, log), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            pool = SttPool([f"ws://127.0.0.1:{port}"], lambda k, r: results.append((k, r)),
                           protocol="whisperlive", eof_idle_s=0.5)
            pcm = (np.sin(np.arange(32000) / 10) * 8000).astype(np.int16)
            for i in range(0, 32000, 3200):
                await pool.send("k", pcm[i:i + 3200], 10.0 + i / 16000)
            await asyncio.wait_for(pool.close("k"), 10)
        return results, log

    results, log = asyncio.run(main())
    assert log["options"]["task"] == "transcribe" and log["eof"] and log["dtype_ok"]
    finals = [r for _, r in results if isinstance(r, Final)]
    # "hello" once (repeated by the server), "world" at the end; times mapped to call time (+10 s)
    assert [(f.text, f.start_s, f.end_s) for f in finals] == [("hello", 10.0, 11.0), ("world", 11.0, 12.0)]
