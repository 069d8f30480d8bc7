"""Glue between the media join and the STT pool, shared by the Faust media agent and the offline
transcriber: audio chunks go to the speaker's STT session, results become ``TranscriptSegment`` records,
and a speaker's ``stream_ended`` fact is published only after its STT session has returned its last
final result (so the call assembler never closes a call before its last words)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any

from spanscribe.metrics import counter
from streams.core.media import AudioChunk, Note, StreamEnded
from streams.core.stt_protocol import SttResult, to_segment
from streams.stt_pool import SttPool

log = logging.getLogger(__name__)

SEGMENTS = counter("spanscribe_transcript_segments_total", "Transcript segments emitted.", ("final",))

SegmentSink = Callable[[bytes, dict[str, Any]], None]     # (key b"site/Call-ID", TranscriptSegment)
CallEventSink = Callable[[bytes, dict[str, Any]], None]   # (key b"site/Call-ID", CallEvent)


class SpeechRouter:
    """Routes :mod:`streams.core.media` outputs; ``on_segment``/``on_call_event`` publish records."""

    def __init__(self, urls: list[str], max_sessions: int, on_segment: SegmentSink,
                 on_call_event: CallEventSink, sample_rate: int = 16000, partials: bool = True,
                 audio_tap: Callable[[AudioChunk], None] | None = None,
                 still_open: Callable[[str, str], bool] | None = None) -> None:
        self.on_segment = on_segment
        self.on_call_event = on_call_event
        self.partials = partials
        self.audio_tap = audio_tap
        self.still_open = still_open
        self._roles: dict[Hashable, tuple[str, str, str, str | None]] = {}
        self.pool = SttPool(urls, self._on_result, max_sessions=max_sessions, sample_rate=sample_rate)
        self._closing: set[asyncio.Task[None]] = set()

    def _on_result(self, key: Hashable, result: SttResult) -> None:
        site, call_id, speaker, role = self._roles[key]
        seg = to_segment(site=site, call_id=call_id, speaker=speaker, role=role, result=result,
                         engine=self.pool.engine_name())
        if not seg["is_final"] and not self.partials:
            return
        SEGMENTS.labels(final=str(seg["is_final"]).lower()).inc()
        self.on_segment(f"{site}/{call_id}".encode(), seg)

    async def handle(self, outputs: list[Any]) -> None:
        """Act on a list of MediaJoiner outputs, in order. Awaits only for STT backpressure."""
        for out in outputs:
            if isinstance(out, AudioChunk):
                key = (out.call_key, out.speaker)
                self._roles[key] = (out.site, out.call_id, out.speaker, out.role)
                if self.audio_tap is not None:
                    self.audio_tap(out)
                await self.pool.send(key, out.pcm, out.start_s)
            elif isinstance(out, StreamEnded):
                task = asyncio.create_task(self._end_stream(out))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif isinstance(out, Note):
                self.on_call_event(out.call_key.encode(), out.to_call_event())

    async def _end_stream(self, ended: StreamEnded) -> None:
        key = (ended.call_key, ended.speaker)
        ev = ended.to_call_event()
        if self.still_open is not None and self.still_open(ended.call_key, ended.speaker):
            # one stream of a speaker whose audio goes on elsewhere (a re-INVITE moved the port): the
            # STT session is the speaker's, not the stream's, so it stays open for the new stream
            self.on_call_event(ended.call_key.encode(), ev)
            return
        await self.pool.close(key)
        if key in self.pool.failed:
            ev["note"] = f"STT failed for {ended.speaker}: {self.pool.failed.pop(key)}"
        self.on_call_event(ended.call_key.encode(), ev)
        self._roles.pop(key, None)

    async def drain(self) -> None:
        """Wait for every stream being closed, then close any session still open."""
        while self._closing:
            await asyncio.gather(*list(self._closing))
        await self.pool.close_all()
