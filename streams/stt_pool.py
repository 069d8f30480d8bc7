"""A bounded pool of STT websocket sessions, one per call speaker (the I/O shell around
:mod:`streams.core.stt_protocol`).

* A session opens on the first audio of a call speaker and closes with the protocol's end-of-stream
  (``close(key)``) after BYE or inactivity; the server's last final result is awaited.
* At most ``max_sessions`` are open over all server URLs (least-loaded URL first). A new speaker waits
  for a free slot, and ``send()`` waits when a session's outgoing queue is full: callers (the Faust
  agent, the offline reader) are paused instead of buffering without bound — backpressure.
* A lost connection is re-opened with exponential backoff and the audio since the last final result is
  sent again (with its call-time anchors), so no speech is lost; at most a few words may repeat.
* Results are handed to ``on_result(key, result)`` as :class:`~streams.core.stt_protocol.Partial` /
  :class:`~streams.core.stt_protocol.Final` with times in seconds from call start.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from spanscribe.metrics import counter, gauge
from streams.core.stt_protocol import Final, SttResult, VoskSession
from streams.core.whisperlive import WhisperLiveSession

log = logging.getLogger(__name__)

SESSIONS = gauge("spanscribe_stt_sessions_active", "Open STT sessions.")
SESSIONS_OPENED = counter("spanscribe_stt_sessions_opened_total", "STT sessions opened.")
RECONNECTS = counter("spanscribe_stt_reconnects_total", "STT connections lost and re-opened.", ("reason",))
RESENT_S = counter("spanscribe_stt_resent_audio_seconds_total", "Audio seconds sent again after a lost session.")
BACKLOG_S = gauge("spanscribe_stt_backlog_seconds", "Audio seconds queued for STT but not yet sent.")
STT_ERRORS = counter("spanscribe_stt_errors_total", "STT protocol errors and failed sessions.", ("reason",))
WAITS = counter("spanscribe_stt_backpressure_waits_total", "Times a sender waited for a session slot or queue room.")

ResultCallback = Callable[[Hashable, SttResult], None]
_EOF = object()


@dataclass
class _Chunk:
    pcm: npt.NDArray[np.int16]
    start_s: float
    rate: int = 16000

    @property
    def end_s(self) -> float:
        return self.start_s + self.pcm.shape[0] / self.rate


@dataclass
class _Session:
    key: Hashable
    url: str
    queue: asyncio.Queue[object]
    task: asyncio.Task[None] | None = None
    retained: deque[_Chunk] = field(default_factory=deque)  # audio since the last final result
    queued_s: float = 0.0
    closed: bool = False
    answered: bool = False  # the server sent something on the current connection
    last_message: int = 0  # messages received (to tell a quiet server)


class SttPool:
    """Sessions keyed by any hashable (normally ``(call_key, speaker)``)."""

    def __init__(self, urls: Sequence[str], on_result: ResultCallback, *, max_sessions: int = 16,
                 sample_rate: int = 16000, queue_chunks: int = 200, connect_timeout_s: float = 10.0,
                 max_backoff_s: float = 10.0, max_retries: int = 8, eof_timeout_s: float = 120.0,
                 protocol: str = "vosk", eof_idle_s: float = 3.0) -> None:
        if not urls:
            raise ValueError("SttPool needs at least one server URL")
        if protocol not in ("vosk", "whisperlive"):
            raise ValueError(f"unknown STT protocol {protocol!r}: expected vosk or whisperlive")
        self.protocol = protocol
        # Vosk closes the session after its last result; WhisperLive may not: after END_OF_AUDIO we stop
        # once it has been quiet this long (or says DISCONNECT)
        self.eof_idle_s = eof_idle_s
        self.urls = list(urls)
        self.on_result = on_result
        self.sample_rate = sample_rate
        self.queue_chunks = queue_chunks
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.max_retries = max_retries
        self.eof_timeout_s = eof_timeout_s
        self._slots = asyncio.Semaphore(max_sessions)
        self._sessions: dict[Hashable, _Session] = {}
        self._load = dict.fromkeys(self.urls, 0)
        self.failed: dict[Hashable, str] = {}

    @property
    def active(self) -> int:
        return len(self._sessions)

    def engine_name(self) -> str:
        return f"{self.protocol}:" + ",".join(self.urls)

    def _new_session(self) -> VoskSession | WhisperLiveSession:
        if self.protocol == "whisperlive":
            return WhisperLiveSession(self.sample_rate, uid=uuid.uuid4().hex)
        return VoskSession(self.sample_rate)

    async def send(self, key: Hashable, pcm: npt.NDArray[np.int16], start_s: float) -> None:
        """Queue ``pcm`` (int16 at ``sample_rate``) whose first sample is at ``start_s`` of call time.
        Opens the session on first use; waits (backpressure) for a slot or for queue room."""
        s = self._sessions.get(key)
        if s is None:
            if self._slots.locked():
                WAITS.inc()
            await self._slots.acquire()
            url = min(self.urls, key=lambda u: self._load[u])
            self._load[url] += 1
            s = _Session(key, url, asyncio.Queue(self.queue_chunks))
            self._sessions[key] = s
            s.task = asyncio.create_task(self._run(s), name=f"stt-{key}")
            SESSIONS.set(len(self._sessions))
            SESSIONS_OPENED.inc()
        if s.queue.full():
            WAITS.inc()
        chunk = _Chunk(np.asarray(pcm, dtype=np.int16), float(start_s), self.sample_rate)
        await s.queue.put(chunk)
        s.queued_s += chunk.pcm.shape[0] / self.sample_rate
        BACKLOG_S.inc(chunk.pcm.shape[0] / self.sample_rate)

    async def close(self, key: Hashable) -> None:
        """End the speaker's session: send end-of-stream and wait for its last final result."""
        s = self._sessions.get(key)
        if s is None or s.closed:
            return
        s.closed = True
        await s.queue.put(_EOF)
        if s.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(s.task), self.eof_timeout_s)
            except TimeoutError:
                STT_ERRORS.labels(reason="eof_timeout").inc()
                log.warning("STT session %s: no final result within %.0fs of end-of-stream", key, self.eof_timeout_s)
                s.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await s.task

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(k) for k in list(self._sessions)))

    # -- one session -------------------------------------------------------------------------------
    async def _run(self, s: _Session) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        attempt = 0
        pending_eof = False
        try:
            while True:
                vs = self._new_session()
                try:
                    async with asyncio.timeout(self.connect_timeout_s):
                        ws = await connect(s.url, max_size=2**22, open_timeout=self.connect_timeout_s,
                                           ping_interval=20, ping_timeout=60)
                except (OSError, TimeoutError, WebSocketException) as exc:
                    attempt += 1
                    RECONNECTS.labels(reason="connect").inc()
                    if attempt > self.max_retries:
                        raise ConnectionError(f"cannot connect to {s.url}: {exc}") from None
                    delay = min(self.max_backoff_s, 0.25 * 2 ** attempt)
                    log.warning("STT %s: connect failed (%s); retry %d in %.1fs", s.url, exc, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                try:
                    await ws.send(vs.config_message())
                    reader = asyncio.create_task(self._read(s, ws, vs))
                    # resend what was not covered by a final result yet (after a reconnect)
                    if s.retained:
                        secs = sum(c.pcm.shape[0] for c in s.retained) / self.sample_rate
                        RESENT_S.inc(secs)
                        log.info("STT %s: resending %.1fs of audio since the last final result", s.url, secs)
                        for c in list(s.retained):
                            await ws.send(vs.audio_message(c.pcm, c.start_s))
                    if pending_eof:
                        await ws.send(vs.eof_message())
                    while not pending_eof:
                        get = asyncio.create_task(s.queue.get())
                        done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                        if get not in done:
                            get.cancel()
                            break  # reader ended: connection lost
                        item = get.result()
                        if item is _EOF:
                            pending_eof = True
                            await ws.send(vs.eof_message())
                            break
                        assert isinstance(item, _Chunk)
                        s.retained.append(item)
                        secs = item.pcm.shape[0] / self.sample_rate
                        s.queued_s -= secs
                        BACKLOG_S.dec(secs)
                        await ws.send(vs.audio_message(item.pcm, item.start_s))
                    if pending_eof and self.protocol == "whisperlive":
                        await self._quiet_then_close(s, ws, reader)
                    await reader  # after eof: the server sends the last result and closes
                    if pending_eof:
                        return
                    raise ConnectionError("server closed the session")
                except (OSError, ConnectionError, WebSocketException) as exc:
                    if s.answered:  # it worked for a while: a new loss starts a new series of retries
                        attempt = 0
                        s.answered = False
                    attempt += 1
                    RECONNECTS.labels(reason="lost").inc()
                    if attempt > self.max_retries:
                        raise
                    delay = min(self.max_backoff_s, 0.25 * 2 ** attempt)
                    log.warning("STT %s: session lost (%s); reconnecting in %.1fs", s.url, exc, delay)
                    await asyncio.sleep(delay)
                finally:
                    await ws.close()
        except Exception as exc:  # the session failed for good: say so, never crash the worker
            STT_ERRORS.labels(reason="session_failed").inc()
            self.failed[s.key] = str(exc)
            log.error("STT session %s failed: %s", s.key, exc)
            # drain the queue so senders never block on a dead session
            while not s.queue.empty():
                s.queue.get_nowait()
        finally:
            self._sessions.pop(s.key, None)
            self._load[s.url] -= 1
            BACKLOG_S.dec(max(s.queued_s, 0.0))
            SESSIONS.set(len(self._sessions))
            self._slots.release()

    async def _quiet_then_close(self, s: _Session, ws: object, reader: asyncio.Task[None]) -> None:
        """WhisperLive: after END_OF_AUDIO, close once the server has been quiet for eof_idle_s."""
        while not reader.done():
            seen = s.last_message
            await asyncio.wait({reader}, timeout=self.eof_idle_s)
            if not reader.done() and s.last_message == seen:
                await ws.close()  # type: ignore[attr-defined]

    async def _read(self, s: _Session, ws: object, vs: VoskSession | WhisperLiveSession) -> None:
        from websockets.exceptions import ConnectionClosedOK

        try:
            async for msg in ws:  # type: ignore[attr-defined]
                if isinstance(msg, bytes):
                    continue
                s.last_message += 1
                if '"DISCONNECT"' in msg:
                    return
                if '"error"' not in msg:
                    s.answered = True
                try:
                    results = vs.on_message(msg)
                except ValueError as exc:
                    STT_ERRORS.labels(reason="bad_message").inc()
                    log.warning("STT %s: unreadable message (%s)", s.url, exc)
                    continue
                if '"error"' in msg:
                    STT_ERRORS.labels(reason="server_error").inc()
                    log.warning("STT %s: server error: %s", s.url, msg[:200])
                for r in results:
                    if isinstance(r, Final):
                        while s.retained and s.retained[0].end_s <= r.end_s + 1e-6:
                            s.retained.popleft()
                    self.on_result(s.key, r)
        except ConnectionClosedOK:
            return
