"""Reference STT websocket server: Vosk protocol, faster-whisper, offline (the thin asyncio shell).

    python -m spanscribe.stt.server [--host 127.0.0.1] [--port 2700] [--model DIR] [--engine whisper]
                                    [--max-sessions 8] [--threads 2] [--log-level INFO]

The protocol and all decisions live in ``spanscribe.stt.protocol`` (session state, replies) and
``spanscribe.stt.segmenter`` (endpointing); this module only moves frames and runs the engine on one
worker thread so the event loop never blocks. Prints ``ready on ws://HOST:PORT`` once the model is
loaded and the socket listens (``--port 0`` picks a free port and prints it).

Privacy: transcript text and audio are never logged; session open/close lines carry counts and durations.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import itertools
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from spanscribe.stt.engine import Engine, make_engine
from spanscribe.stt.protocol import (
    CLOSE_NORMAL,
    CLOSE_TRY_AGAIN_LATER,
    Reply,
    SendPartial,
    Session,
    Transcribe,
    Word,
    busy_json,
    merge_finals,
    partial_json,
)

log = logging.getLogger(__name__)

PARTIAL_EVERY_S = 1.5  # re-transcribe the open utterance at most this often (new audio seconds)
MAX_FRAME_BYTES = 1 << 20  # websockets closes with 1009 above this


@dataclass
class ServerState:
    """Shared by all connections of one server."""

    engine: Engine
    max_sessions: int
    executor: concurrent.futures.ThreadPoolExecutor
    active: int = 0
    pending_jobs: int = 0  # engine jobs queued or running; partials only run when it is 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        self.pending_jobs += 1
        try:
            return await loop.run_in_executor(self.executor, lambda: fn(*args, **kw))
        finally:
            self.pending_jobs -= 1


class Connection:
    """One websocket session: feed ``Session`` and execute its actions."""

    def __init__(self, ws: ServerConnection, state: ServerState) -> None:
        self.ws = ws
        self.state = state
        self.sid = next(state.ids)
        self.session = Session()
        self.partial_text = ""
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_at_samples = 0  # utterance length at the last partial request
        self._partial_utt_start = -1
        self.engine_s = 0.0
        self.words = 0

    async def serve(self) -> None:
        t0 = time.monotonic()
        code = None
        log.info("session %d open from %s (%d active)", self.sid, _peer(self.ws), self.state.active)
        try:
            async for message in self.ws:
                action = self.session.receive(message)
                if action is None:
                    continue
                if isinstance(action, Reply):
                    await self.ws.send(action.text)
                elif isinstance(action, SendPartial):
                    self._maybe_partial()
                    await self.ws.send(partial_json(self.partial_text))
                elif isinstance(action, Transcribe):
                    await self._final(action)
                    if action.close:
                        await self.ws.close(CLOSE_NORMAL, "eof")
                        break
        except ConnectionClosed:
            pass
        finally:
            if self._partial_task is not None:
                self._partial_task.cancel()
            code = self.ws.close_code
            s = self.session
            log.info(
                "session %d closed (code %s): %.1f s audio at %d Hz, %d frames, %d utterances, %d words, "
                "%d errors, engine+queue %.2f s, wall %.1f s",
                self.sid, code, s.audio_s, s.sample_rate, s.frames, s.utterances, self.words, s.errors,
                self.engine_s, time.monotonic() - t0,
            )

    async def _final(self, action: Transcribe) -> None:
        parts: list[tuple[list[Word], float]] = []
        for u in action.utterances:
            t = time.perf_counter()
            try:
                words = await self.state.run(self.state.engine.transcribe, u.samples, action.sample_rate,
                                             final=True)
            except Exception:  # an engine failure loses this utterance, not the session
                log.exception("session %d: transcription failed", self.sid)
                self.session.errors += 1
                words = []
            self.engine_s += time.perf_counter() - t
            parts.append((words, self.session.offset_s(u)))
            self.words += len(words)
            log.debug("session %d: utterance %.2f-%.2f s (%s), %d words", self.sid,
                      self.session.offset_s(u), u.end_sample / action.sample_rate, u.reason, len(words))
        # A final supersedes any partial of the same audio.
        self.partial_text = ""
        self._partial_at_samples = 0
        self._partial_utt_start = -1
        await self.ws.send(merge_finals(parts))

    def _maybe_partial(self) -> None:
        """Start a cheap partial transcription of the open utterance when it is worth it."""
        if self._partial_task is not None and not self._partial_task.done():
            return
        span = self.session.current_span()
        if span is None:
            return
        start, length = span
        if start != self._partial_utt_start:
            self._partial_utt_start, self._partial_at_samples = start, 0
            self.partial_text = ""
        grown_s = (length - self._partial_at_samples) / self.session.sample_rate
        if grown_s < PARTIAL_EVERY_S or self.state.pending_jobs > 0:
            return
        u = self.session.current()
        if u is None:  # pragma: no cover - span said otherwise
            return
        self._partial_at_samples = u.samples.size
        self._partial_task = asyncio.create_task(self._partial(u.start_sample, u.samples))

    async def _partial(self, start: int, samples: Any) -> None:
        t = time.perf_counter()
        try:
            words = await self.state.run(self.state.engine.transcribe, samples, self.session.sample_rate,
                                         final=False)
        except Exception:  # a partial is best effort
            log.exception("session %d: partial transcription failed", self.sid)
            return
        finally:
            self.engine_s += time.perf_counter() - t
        if start == self._partial_utt_start:  # still the same open utterance
            self.partial_text = " ".join(w.word for w in words)


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    except Exception:  # noqa: BLE001 - unix sockets, closed transports
        return "?"


async def _handler(ws: ServerConnection, state: ServerState) -> None:
    if state.active >= state.max_sessions:
        log.warning("refusing a session from %s: %d of %d sessions active", _peer(ws), state.active,
                    state.max_sessions)
        try:
            await ws.send(busy_json(state.active))
            await ws.close(CLOSE_TRY_AGAIN_LATER, "server busy")
        except ConnectionClosed:
            pass
        return
    state.active += 1
    try:
        await Connection(ws, state).serve()
    finally:
        state.active -= 1


async def serve_forever(args: argparse.Namespace, stop: asyncio.Future[None] | None = None, *,
                        announce: bool | None = None, engine: Engine | None = None,
                        ready: asyncio.Future[str] | None = None) -> None:
    """Load the engine, listen, announce readiness, serve until ``stop`` resolves.

    Standalone (``stop`` None): SIGINT/SIGTERM stop the server and the ready line is printed to stdout.
    Embedded (a caller's ``stop`` future, e.g. ``spanscribe transcribe`` running the engine in-process):
    no signal handlers are installed and readiness is only logged, unless ``announce`` is True.
    ``args`` needs only the attributes it uses; missing ones take the CLI defaults. ``engine`` overrides
    ``args.engine``/``args.model`` (an embedding caller may share one loaded model). ``ready``, if given,
    receives the ``ws://host:port`` URL once the socket listens (useful with port 0).
    """
    standalone = stop is None
    announce = standalone if announce is None else announce
    if engine is None:
        engine = make_engine(getattr(args, "engine", "whisper") or "whisper", getattr(args, "model", None),
                             threads=int(getattr(args, "threads", 2) or 2),
                             beam_size=int(getattr(args, "beam_size", 2) or 2))
    # One worker thread: CTranslate2 already uses `threads` cores inside each call, and one queue keeps
    # finals in arrival order across sessions.
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-engine")
    state = ServerState(engine=engine, max_sessions=int(getattr(args, "max_sessions", 8)), executor=executor)
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = loop.create_future()
    done: asyncio.Future[None] = stop

    def _stop() -> None:
        if not done.done():
            done.set_result(None)

    if standalone:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, _stop)
            except (NotImplementedError, RuntimeError):  # not the main thread / not Unix
                pass
    host = getattr(args, "host", "127.0.0.1") or "127.0.0.1"
    try:
        async with serve(lambda ws: _handler(ws, state), host, int(getattr(args, "port", 2700)),
                         max_size=MAX_FRAME_BYTES, compression=None) as server:
            port = server.sockets[0].getsockname()[1] if server.sockets else getattr(args, "port", 2700)
            log.info("ready on ws://%s:%s (engine %s, max %d sessions)", host, port, engine.name,
                     state.max_sessions)
            if announce:
                print(f"ready on ws://{host}:{port}", flush=True)
            if ready is not None and not ready.done():
                ready.set_result(f"ws://{host}:{port}")
            await stop
            log.info("shutting down (%d active sessions)", state.active)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m spanscribe.stt.server",
                                 description="Reference STT websocket server (Vosk protocol, faster-whisper).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2700, help="0 picks a free port (printed on the ready line)")
    ap.add_argument("--model", default=None, help="CTranslate2 whisper directory (default: cached whisper-base)")
    ap.add_argument("--engine", choices=("whisper", "null", "echo"), default="whisper",
                    help="null: no words, no model (pipeline benchmarks); echo: one word per utterance (tests)")
    ap.add_argument("--max-sessions", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the model")
    ap.add_argument("--beam-size", type=int, default=2)
    ap.add_argument("--log-level", default="INFO")
    return ap


def run(args: argparse.Namespace) -> int:
    """Entry point for ``spanscribe stt-server``: blocks until SIGINT/SIGTERM; returns an exit code."""
    level = str(getattr(args, "log_level", "INFO") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every handshake at INFO; keep the server's own lines readable.
    quiet = max(logging.WARNING, logging.getLevelName(level))
    logging.getLogger("websockets").setLevel(quiet)
    logging.getLogger("faster_whisper").setLevel(quiet)  # one INFO line per decode otherwise
    try:
        asyncio.run(serve_forever(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
