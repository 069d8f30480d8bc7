"""Fixtures for the reference STT server tests: a server subprocess on a free port, the example call's
audio per speaker (decoded from the bundled capture's RTP), and a small Vosk-protocol client."""
from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import dpkt
import numpy as np
import pytest

from spanscribe.stt.launch import running_server

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
READY_TIMEOUT_S = 90.0


@dataclass
class SttServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(log_dir: Path, engine: str, max_sessions: int = 8, *extra: str) -> Iterator[SttServer]:
    """Start ``python -m spanscribe.stt.server --port 0`` and wait for its ready line."""
    log_path = log_dir / f"stt-server-{engine}-{time.monotonic_ns()}.log"
    args = ["--port", "0", "--engine", engine, "--max-sessions", str(max_sessions), *extra]
    with running_server(args, log_path=log_path, ready_timeout_s=READY_TIMEOUT_S) as (proc, url):
        yield SttServer(url, proc, log_path)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., SttServer]]:
    with ExitStack() as stack:
        yield lambda engine="echo", max_sessions=8, *extra: stack.enter_context(
            run_server(tmp_path, engine, max_sessions, *extra))


@pytest.fixture(scope="session")
def whisper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SttServer]:
    """One real-model server for the whole run (model load ~1-2 s), capped at 3 sessions."""
    with run_server(tmp_path_factory.mktemp("stt"), "whisper", 3) as srv:
        yield srv


@pytest.fixture(scope="session")
def make_example(load_module: Callable[[Path, str], ModuleType]) -> ModuleType:
    """examples/make_example.py as a module (synthesize, mulaw codec, SCRIPTS, VOICES)."""
    return load_module(EXAMPLES / "make_example.py", "spanscribe_examples_make_example")


@dataclass(frozen=True)
class CallAudio:
    expected: dict[str, Any]  # the call's entry in call-g711.expected.json
    pcm8k: dict[str, np.ndarray]  # speaker -> int16 samples decoded from the RTP (8 kHz, mu-law path)


@pytest.fixture(scope="session")
def call_audio(make_example: ModuleType) -> CallAudio:
    doc = json.loads((EXAMPLES / "call-g711.expected.json").read_text())["calls"][0]
    src = {tuple(d["rtp"]["src"].split(":")): spk for spk, d in doc["speakers"].items()}
    payloads: dict[str, list[bytes]] = {spk: [] for spk in doc["speakers"]}
    with (EXAMPLES / "call-g711.pcap").open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            u = ip.data
            spk = src.get((".".join(map(str, ip.src)), str(u.sport)))
            if spk is not None:
                payloads[spk].append(bytes(u.data)[12:])
    pcm = {spk: make_example.mulaw_decode(np.frombuffer(b"".join(p), np.uint8)) for spk, p in payloads.items()}
    return CallAudio(doc, pcm)


@dataclass
class SessionResult:
    messages: list[dict[str, Any]] = field(default_factory=list)
    replies_per_frame: list[int] = field(default_factory=list)
    close_code: int | None = None
    wall_s: float = 0.0

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if "text" in m]

    @property
    def partials(self) -> list[str]:
        return [m["partial"] for m in self.messages if "partial" in m]

    @property
    def errors(self) -> list[str]:
        return [m["error"] for m in self.messages if "error" in m]

    @property
    def text(self) -> str:
        return " ".join(m["text"] for m in self.finals if m["text"])

    @property
    def words(self) -> list[dict[str, Any]]:
        return [w for m in self.finals for w in m["result"]]


async def vosk_stream(url: str, pcm: np.ndarray, rate: int | None, *, frame_s: float = 0.1,
                      speedup: float | None = None, before: list[str | bytes] | None = None,
                      inject: dict[int, list[str | bytes]] | None = None) -> SessionResult:
    """Lock-step Vosk client: (config,) frames each followed by reading exactly one reply, then eof.

    ``rate`` None sends no config (server default 16 kHz). ``speedup`` paces frames at that multiple of
    real time (None: as fast as replies come). ``before``/``inject`` send extra raw messages (each must
    draw one reply) before the audio / before frame N.
    """
    from websockets.asyncio.client import connect

    res = SessionResult()
    t0 = time.monotonic()
    data = pcm.astype("<i2").tobytes()
    step = 2 * round(frame_s * (rate or 16000))
    async with connect(url, max_size=None) as ws:
        async def one(msg: str | bytes) -> None:
            await ws.send(msg)
            res.messages.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))

        if rate is not None:
            await ws.send(json.dumps({"config": {"sample_rate": rate}}))
        for msg in before or []:
            await one(msg)
        for n, i in enumerate(range(0, len(data), step)):
            for msg in (inject or {}).get(n, []):
                await one(msg)
            before_n = len(res.messages)
            await one(data[i : i + step])
            res.replies_per_frame.append(len(res.messages) - before_n)
            if speedup:
                await asyncio.sleep(max(0.0, t0 + (i + step) / 2 / (rate or 16000) / speedup - time.monotonic()))
        await ws.send('{"eof" : 1}')
        async for m in ws:
            res.messages.append(json.loads(m))
        res.close_code = ws.close_code
    res.wall_s = time.monotonic() - t0
    return res


@pytest.fixture
def vosk() -> Callable[..., Awaitable[SessionResult]]:
    return vosk_stream
