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

RESUMED = counter("spanscribe_stt_resumed_streams_total",
                  "Speaker streams resumed after a restart from a saved STT checkpoint (audio before it skipped).")
SEGMENTS = counter("spanscribe_transcript_segments_total", "Transcript segments emitted.", ("final",))

SegmentSink = Callable[[bytes, dict[str, Any]], None]     # (key b"site/Call-ID", TranscriptSegment)
# (call_key, speaker, stream_key, call time in s of the end of the last final result | None = forget)
CheckpointSink = Callable[[str, str, str, float | None], None]
CheckpointSource = Callable[[str, str], float | None]  # (call_key, speaker) -> saved checkpoint
CallEventSink = Callable[[bytes, dict[str, Any]], None]   # (key b"site/Call-ID", CallEvent)
# (call_key, speaker, stream_key, call time in s of the end of all audio handled): the speaker's session
# closed after its last final result, so everything before it is transcribed ("done" marker)
DoneSink = Callable[[str, str, str, float], None]


class SpeechRouter:
    """Routes :mod:`streams.core.media` outputs; ``on_segment``/``on_call_event`` publish records."""

    def __init__(self, urls: list[str], max_sessions: int, on_segment: SegmentSink,
                 on_call_event: CallEventSink, sample_rate: int = 16000, partials: bool = True,
                 audio_tap: Callable[[AudioChunk], None] | None = None,
                 still_open: Callable[[str, str], bool] | None = None,
                 save_checkpoint: CheckpointSink | None = None,
                 load_checkpoint: CheckpointSource | None = None, protocol: str = "vosk",
                 mark_done: DoneSink | None = None, was_done: Callable[[str, str], bool] | None = None) -> None:
        self.on_segment = on_segment
        self.on_call_event = on_call_event
        self.partials = partials
        self.audio_tap = audio_tap
        self.still_open = still_open
        self.save_checkpoint = save_checkpoint
        self.load_checkpoint = load_checkpoint
        # with mark_done, a closed session leaves a "done" checkpoint (end of all audio handled) instead
        # of deleting it, so RTP read again after a restart is not transcribed twice; was_done tells a
        # restarted worker that a speaker's stream_ended was published already
        self.mark_done = mark_done
        self.was_done = was_done
        self._handled_end: dict[Hashable, float] = {}  # end (call time) of the audio sent or skipped
        self._sent: set[Hashable] = set()  # speakers with audio sent to STT in this process
        self._done_before: set[Hashable] = set()  # resumed from a "done" checkpoint
        self._stream_key: dict[Hashable, str] = {}
        self._resume_s: dict[Hashable, float] = {}  # audio before this call time was finalised already
        self._roles: dict[Hashable, tuple[str, str, str, str | None]] = {}
        self.pool = SttPool(urls, self._on_result, max_sessions=max_sessions, sample_rate=sample_rate,
                            protocol=protocol)
        self._closing: set[asyncio.Task[None]] = set()

    def _on_result(self, key: Hashable, result: SttResult) -> None:
        site, call_id, speaker, role = self._roles[key]
        seg = to_segment(site=site, call_id=call_id, speaker=speaker, role=role, result=result,
                         engine=self.pool.engine_name())
        if not seg["is_final"] and not self.partials:
            return
        SEGMENTS.labels(final=str(seg["is_final"]).lower()).inc()
        self.on_segment(f"{site}/{call_id}".encode(), seg)
        if seg["is_final"] and self.save_checkpoint is not None and key in self._stream_key:
            self.save_checkpoint(f"{site}/{call_id}", speaker, self._stream_key[key], float(seg["end_s"]))

    async def handle(self, outputs: list[Any], behind_s: float = 0.0) -> None:
        """Act on a list of MediaJoiner outputs, in order. Awaits only for STT backpressure.
        ``behind_s``: how far their capture time is behind the wall clock (see ``SttPool.send``)."""
        for out in outputs:
            if isinstance(out, AudioChunk):
                key = (out.call_key, out.speaker)
                if key not in self._roles and self.load_checkpoint is not None:
                    # first audio of this speaker in this process: after a worker restart, the audio up
                    # to the last final result the previous worker got is not sent again
                    cp = self.load_checkpoint(out.call_key, out.speaker)
                    if cp is not None:
                        self._resume_s[key] = cp
                        RESUMED.inc()
                        if self.was_done is not None and self.was_done(out.call_key, out.speaker):
                            self._done_before.add(key)
                self._roles[key] = (out.site, out.call_id, out.speaker, out.role)
                self._stream_key[key] = out.stream_key
                if self.audio_tap is not None:
                    self.audio_tap(out)
                pcm, start_s = out.pcm, out.start_s
                self._handled_end[key] = max(self._handled_end.get(key, out.end_s), out.end_s)
                resume = self._resume_s.get(key)
                if resume is not None:
                    if out.end_s <= resume:
                        continue
                    if start_s < resume:
                        cut = int(round((resume - start_s) * out.sample_rate))
                        pcm, start_s = pcm[cut:], start_s + cut / out.sample_rate
                    else:
                        del self._resume_s[key]
                if pcm.shape[0]:
                    self._sent.add(key)
                    await self.pool.send(key, pcm, start_s, behind_s)
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
        # a restarted worker re-read a stream whose session the previous worker had closed, and sent
        # nothing new: that worker published its stream_ended already (with the whole stream's stats)
        repeat = key in self._done_before and key not in self._sent
        stream_key = self._stream_key.pop(key, None)
        handled = self._handled_end.pop(key, None)
        resume = self._resume_s.pop(key, None)
        self._sent.discard(key)
        self._done_before.discard(key)
        if key in self.pool.failed:
            ev["note"] = f"STT failed for {ended.speaker}: {self.pool.failed.pop(key)}"
        if not repeat:
            self.on_call_event(ended.call_key.encode(), ev)
        if stream_key is not None:  # after the event: a kill in between repeats it rather than loses it
            if self.mark_done is not None and handled is not None:
                self.mark_done(ended.call_key, ended.speaker, stream_key, max(handled, resume or handled))
            elif self.save_checkpoint is not None:
                self.save_checkpoint(ended.call_key, ended.speaker, stream_key, None)
        self._roles.pop(key, None)

    async def drain(self) -> None:
        """Wait for every stream being closed, then close any session still open."""
        while self._closing:
            await asyncio.gather(*list(self._closing))
        await self.pool.close_all()
