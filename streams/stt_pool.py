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
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from spanscribe.metrics import counter, gauge
from streams.core.stt_protocol import Final, SttResult, VoskSession
from streams.core.whisperlive import WhisperLiveSession

log = logging.getLogger(__name__)

SESSIONS = gauge("spanscribe_stt_sessions_active", "Open STT sessions.")
SESSIONS_OPENED = counter("spanscribe_stt_sessions_opened_total", "STT sessions opened.")
RECONNECTS = counter("spanscribe_stt_reconnects_total", "STT connections lost and re-opened.", ("reason",))
UNRESENDABLE_S = counter("spanscribe_stt_resend_dropped_seconds_total",
                         "Audio seconds dropped from a session's resend buffer: no final result within "
                         "max_resend_s (a silent or slow speaker); a lost connection cannot resend them.")
RESENT_S = counter("spanscribe_stt_resent_audio_seconds_total", "Audio seconds sent again after a lost session.")
BACKLOG_S = gauge("spanscribe_stt_backlog_seconds", "Audio seconds queued for STT but not yet sent.")
# the backlog is summed over the live pools when scraped: a gauge inc/dec per 100 ms chunk (a lock each)
# cost 3% of the worker's CPU (py-spy, bench/worker_bench.py --profile)
_POOLS: weakref.WeakSet[SttPool] = weakref.WeakSet()
STT_ERRORS = counter("spanscribe_stt_errors_total", "STT protocol errors and failed sessions.", ("reason",))
WAITS = counter("spanscribe_stt_backpressure_waits_total", "Times a sender waited for a session slot or queue room.")

ResultCallback = Callable[[Hashable, SttResult], None]


@dataclass
class _Chunk:
    pcm: npt.NDArray[np.int16]
    start_s: float
    rate: int = 16000

    @property
    def end_s(self) -> float:
        return self.start_s + int(self.pcm.shape[0]) / self.rate


def take_contiguous(pending: deque[_Chunk], max_samples: int) -> _Chunk:
    """Pop the first chunk of ``pending`` merged with the chunks that simply continue it (next start =
    this end, within half a millisecond), up to ``max_samples``: one websocket message instead of one per
    100 ms chunk when audio has queued up (a backlog, a slow server). A gap in call time (silence gate,
    lost stream) starts a new message, so each message's call-time anchor stays exact."""
    first = pending.popleft()
    if not pending or pending[0].rate != first.rate:
        return first
    parts = [first.pcm]
    n, end = first.pcm.shape[0], first.end_s
    while pending:
        nxt = pending[0]
        if abs(nxt.start_s - end) > 0.0005 or n + nxt.pcm.shape[0] > max_samples or nxt.rate != first.rate:
            break
        pending.popleft()
        parts.append(nxt.pcm)
        n += nxt.pcm.shape[0]
        end = nxt.end_s
    if len(parts) == 1:
        return first
    return _Chunk(np.concatenate(parts), first.start_s, first.rate)


def trim_finalised(retained: deque[_Chunk], final_end_s: float) -> None:
    """Drop retained audio up to ``final_end_s`` (the end of a final result): whole chunks before it, and
    the head of the chunk it falls in, so a reconnect resends only audio no final result covered."""
    while retained and retained[0].end_s <= final_end_s + 1e-6:
        retained.popleft()
    if retained and retained[0].start_s < final_end_s:
        c = retained[0]
        cut = int(round((final_end_s - c.start_s) * c.rate))
        retained[0] = _Chunk(c.pcm[cut:], c.start_s + cut / c.rate, c.rate)


@dataclass(eq=False)  # hashed by identity (the set of sessions to wake)
class _Session:
    key: Hashable
    url: str
    pending: deque[_Chunk] = field(default_factory=deque)  # queued by send(), not yet on the wire
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # pending grew, eof, or the reader ended
    room: asyncio.Event = field(default_factory=asyncio.Event)  # pending has room again
    task: asyncio.Task[None] | None = None
    retained: deque[_Chunk] = field(default_factory=deque)  # audio since the last final result
    queued_s: float = 0.0
    closed: bool = False  # end-of-stream asked for (sent after every pending chunk)
    dead: bool = False  # failed for good: send() drops instead of waiting
    answered: bool = False  # the server sent something on the current connection
    # set while the writer waits with nothing queued on a live connection: send() then writes a live
    # chunk itself (no wake-up and task switch per 100 ms chunk); the frame is written to the socket
    # before any suspension, so the order on the wire is the order of the calls
    idle: tuple[Any, VoskSession | WhisperLiveSession] | None = None
    last_message: int = 0  # messages received (to tell a quiet server)


class SttPool:
    """Sessions keyed by any hashable (normally ``(call_key, speaker)``)."""

    def __init__(self, urls: Sequence[str], on_result: ResultCallback, *, max_sessions: int = 16,
                 sample_rate: int = 16000, queue_chunks: int = 200, connect_timeout_s: float = 10.0,
                 max_backoff_s: float = 10.0, max_retries: int = 8, eof_timeout_s: float = 120.0,
                 protocol: str = "vosk", eof_idle_s: float = 3.0, max_message_s: float = 2.0,
                 behind_s: float = 5.0, coalesce_s: float = 1.0, coalesce_wait_s: float = 0.5,
                 max_resend_s: float = 30.0) -> None:
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
        self.max_message_samples = max(1, int(max_message_s * sample_rate))
        # audio this far behind real time (a backlog, a replay) is sent in messages of about coalesce_s
        # (waking the session's writer at most every coalesce_wait_s of wall time); fresher audio is sent
        # as it comes
        self.behind_s = behind_s
        # audio kept for a resend after a lost connection spans at most this much call time: a speaker
        # who never gets a final result (silence, a null engine) would otherwise keep a whole call of
        # audio in memory (measured: 640 MB for 1000 speakers x 20 s with the null STT server); 30 s =
        # ~1 MB per speaker at 16 kHz, and the worker's ack hold (worker.ack_hold_s) is 30 s too
        self.max_resend_s = max_resend_s
        self.coalesce_s = coalesce_s
        self.coalesce_wait_s = coalesce_wait_s
        self._dirty: set[_Session] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.max_retries = max_retries
        self.eof_timeout_s = eof_timeout_s
        self._slots = asyncio.Semaphore(max_sessions)
        self._sessions: dict[Hashable, _Session] = {}
        self._load = dict.fromkeys(self.urls, 0)
        self.failed: dict[Hashable, str] = {}
        self.backlog_s = 0.0  # audio seconds queued in all sessions, not yet sent
        _POOLS.add(self)

    @property
    def active(self) -> int:
        return len(self._sessions)

    def engine_name(self) -> str:
        return f"{self.protocol}:" + ",".join(self.urls)

    def _new_session(self) -> VoskSession | WhisperLiveSession:
        if self.protocol == "whisperlive":
            return WhisperLiveSession(self.sample_rate, uid=uuid.uuid4().hex)
        return VoskSession(self.sample_rate)

    async def send(self, key: Hashable, pcm: npt.NDArray[np.int16], start_s: float, behind_s: float = 0.0) -> None:
        """Queue ``pcm`` (int16 at ``sample_rate``) whose first sample is at ``start_s`` of call time.
        Opens the session on first use; waits (backpressure) for a slot or for queue room.
        ``behind_s``: how far the audio's capture time is behind the wall clock; at ``self.behind_s`` or
        more (a backlog) chunks are merged into messages of about ``coalesce_s`` before sending."""
        s = self._sessions.get(key)
        if s is None:
            if self._slots.locked():
                WAITS.inc()
            await self._slots.acquire()
            url = min(self.urls, key=lambda u: self._load[u])
            self._load[url] += 1
            s = _Session(key, url)
            self._sessions[key] = s
            s.task = asyncio.create_task(self._run(s), name=f"stt-{key}")
            SESSIONS.set(len(self._sessions))
            SESSIONS_OPENED.inc()
        if len(s.pending) >= self.queue_chunks:
            WAITS.inc()
            while len(s.pending) >= self.queue_chunks and not s.dead:
                s.room.clear()
                await s.room.wait()
        if s.dead:
            return  # failed for good (counted, reported on the call): never block the caller on it
        chunk = _Chunk(np.asarray(pcm, dtype=np.int16), float(start_s), self.sample_rate)
        if s.idle is not None and not s.pending and not s.closed and behind_s < self.behind_s:
            ws, vs = s.idle
            self._retain(s, chunk)
            with contextlib.suppress(Exception):  # a lost connection: the reader ends, the writer
                await ws.send(vs.audio_message(chunk.pcm, chunk.start_s))  # reconnects and resends it
            return
        s.pending.append(chunk)
        secs = chunk.pcm.shape[0] / self.sample_rate
        s.queued_s += secs
        self.backlog_s += secs
        if behind_s < self.behind_s or s.queued_s >= self.coalesce_s or s.closed:
            s.wake.set()
            self._dirty.discard(s)
        else:  # a backlog: let audio gather (the flusher wakes it within coalesce_wait_s)
            self._dirty.add(s)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_dirty(), name="stt-flusher")

    async def _flush_dirty(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.coalesce_wait_s)
            dirty, self._dirty = self._dirty, set()
            for s in dirty:
                s.wake.set()

    async def close(self, key: Hashable) -> None:
        """End the speaker's session: send end-of-stream and wait for its last final result."""
        s = self._sessions.get(key)
        if s is None or s.closed:
            return
        s.closed = True
        s.wake.set()
        self._dirty.discard(s)
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
                    reader.add_done_callback(lambda _t: s.wake.set())
                    # resend what was not covered by a final result yet (after a reconnect)
                    if s.retained:
                        secs = sum(c.pcm.shape[0] for c in s.retained) / self.sample_rate
                        RESENT_S.inc(secs)
                        log.info("STT %s: resending %.1fs of audio since the last final result", s.url, secs)
                        for c in list(s.retained):
                            await ws.send(vs.audio_message(c.pcm, c.start_s))
                    if await self._write(s, ws, vs, reader):
                        await ws.send(vs.eof_message())
                        if self.protocol == "whisperlive":
                            await self._quiet_then_close(s, ws, reader)
                        await reader  # after eof: the server sends the last result and closes
                        return
                    await reader  # the reader ended: the connection is lost
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
        finally:
            s.dead = True
            s.pending.clear()  # senders never block on a dead session
            s.room.set()
            self._sessions.pop(s.key, None)
            self._load[s.url] -= 1
            self.backlog_s -= max(s.queued_s, 0.0)
            SESSIONS.set(len(self._sessions))
            self._slots.release()

    async def _write(self, s: _Session, ws: Any, vs: VoskSession | WhisperLiveSession,
                     reader: asyncio.Task[None]) -> bool:
        """Send pending audio as it comes, merging what has queued up; True once every chunk is sent and
        end-of-stream is due, False if the reader ended (connection lost)."""
        while not reader.done():
            if s.pending:
                item = take_contiguous(s.pending, self.max_message_samples)
                if len(s.pending) < self.queue_chunks:
                    s.room.set()
                self._retain(s, item)
                secs = item.pcm.shape[0] / self.sample_rate
                s.queued_s -= secs
                self.backlog_s -= secs
                await ws.send(vs.audio_message(item.pcm, item.start_s))
            elif s.closed:
                return True
            else:
                s.wake.clear()
                s.idle = (ws, vs)
                try:
                    await s.wake.wait()
                finally:
                    s.idle = None
        return False

    def _retain(self, s: _Session, chunk: _Chunk) -> None:
        """Keep a sent chunk for a resend until a final result covers it, at most max_resend_s."""
        s.retained.append(chunk)
        while len(s.retained) > 1 and s.retained[-1].end_s - s.retained[0].start_s > self.max_resend_s:
            UNRESENDABLE_S.inc(s.retained.popleft().pcm.shape[0] / self.sample_rate)

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
                        trim_finalised(s.retained, r.end_s)
                    self.on_result(s.key, r)
        except ConnectionClosedOK:
            return


def _backlog_s() -> float:
    return sum(p.backlog_s for p in list(_POOLS))


BACKLOG_S.set_function(_backlog_s)
