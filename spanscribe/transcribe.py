"""``spanscribe transcribe FILE``: the whole pipeline in one process on a capture file, no Kafka.

The same code as production, wired directly: the edge pipeline (decode, reassembly, SIP/SDP, RTP
batching) hands its records to the centre's pure core (dialogs -> bindings -> media join -> jitter
buffer -> codecs) and the STT pool, and the call assembler writes one ``CallTranscript`` per call.
It is the proof that the core is free of I/O. Outputs: ``DIR/<call>.json`` (the CallTranscript as JSON)
and ``DIR/<call>.<speaker>.wav`` (16 kHz mono, the audio sent to STT, silence where nothing was heard).
With ``--no-stt --wav-rate 8000`` the WAVs hold G.711's decoded audio at its own rate, never resampled
(the fidelity tests compare it sample for sample with an independent decode of the RTP payloads).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import time
import wave
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_capture.pcapfile import PcapError, open_capture, read_capture
from edge_capture.pipeline import EdgeConfig, EdgePipeline
from streams.core.assembler import CallAssembler
from streams.core.dialog import BindingOut, CallEventOut, DialogConfig, DialogTracker, SpeakerMap
from streams.core.media import AudioChunk, MediaJoiner

log = logging.getLogger(__name__)
STT_RATE = 16000
END_OF_TIME_US = 1 << 62


class CaptureReadError(ValueError):
    """The capture turned corrupt part way; ``calls``: what was read before it (already written)."""

    def __init__(self, message: str, calls: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.calls = calls


class _ListSink:
    """Collects the edge pipeline's records until the driver takes them."""

    def __init__(self, partitions: int = 1) -> None:
        self.rtp_partitions = partitions
        self.records: list[tuple[str, dict[str, Any]]] = []

    def send_sip(self, key: bytes, record: dict[str, Any]) -> None:
        self.records.append(("sip", record))

    def send_rtp(self, partition: int, key: bytes, record: dict[str, Any]) -> None:
        self.records.append(("rtp", record))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.records = self.records, []
        return out


@dataclass
class _Recorder:
    """Per (call, speaker) PCM placed at its call time, for the WAV files."""

    rate: int = STT_RATE
    parts: dict[tuple[str, str], list[tuple[float, npt.NDArray[np.int16]]]] = field(
        default_factory=lambda: defaultdict(list))

    def tap(self, chunk: AudioChunk) -> None:
        self.parts[(chunk.call_key, chunk.speaker)].append((chunk.start_s, chunk.pcm))

    def pcm(self, call_key: str, speaker: str) -> npt.NDArray[np.int16]:
        parts = self.parts.get((call_key, speaker), [])
        if not parts:
            return np.zeros(0, dtype=np.int16)
        end = max(int(round(s * self.rate)) + p.shape[0] for s, p in parts)
        out = np.zeros(end, dtype=np.int16)
        for s, p in parts:
            i = int(round(s * self.rate))
            out[i:i + p.shape[0]] = p
        return out


def write_wav(path: Path, pcm: npt.NDArray[np.int16], rate: int = STT_RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


def safe_name(call_id: str) -> str:
    """A file name for a Call-ID (Call-IDs may hold '@', '/', ':' ...)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:120] or "call"


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        if self.tty:
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r  reading [{bar:<30}] {frac * 100:5.1f}%")
            sys.stderr.flush()
        else:
            log.info("read %.0f%% of the capture", frac * 100)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write(f"\r  reading [{'#' * 30}] 100.0%\n")


async def transcribe_file(path: str, out_dir: Path, settings: dict[str, Any], stt_urls: list[str] | None,
                          site: str = "offline", max_sessions: int = 16,
                          wav_rate: int = STT_RATE) -> list[dict[str, Any]]:
    """Run the pipeline on ``path``; returns the CallTranscript dicts (also written to ``out_dir``).

    ``wav_rate``: only without STT (``stt_urls`` None) may it differ from 16000: the media core then
    produces audio at that rate (at a codec's own rate, e.g. 8000 for G.711, with no resampling).
    """
    from streams.speech import SpeechRouter

    if stt_urls and wav_rate != STT_RATE:
        raise ValueError(f"--wav-rate {wav_rate} needs --no-stt (STT gets {STT_RATE} Hz)")
    out_dir.mkdir(parents=True, exist_ok=True)
    speakers = settings.get("speakers") or {}
    tracker = DialogTracker(DialogConfig(speaker_map=SpeakerMap.from_config(
        speakers.get("agent_networks") or [], speakers.get("agent_extensions") or [])))
    joiner = MediaJoiner(stt_rate=wav_rate)
    assembler = CallAssembler()
    calls: list[dict[str, Any]] = []
    recorder = _Recorder(rate=wav_rate)

    def emit_calls(docs: list[dict[str, Any]]) -> None:
        calls.extend(docs)

    def on_segment(key: bytes, seg: dict[str, Any]) -> None:
        emit_calls(assembler.on_segment(seg))

    def on_call_event(key: bytes, ev: dict[str, Any]) -> None:
        emit_calls(assembler.on_call_event(ev))

    router: SpeechRouter | None = None
    if stt_urls:
        router = SpeechRouter(stt_urls, max_sessions, on_segment, on_call_event, sample_rate=STT_RATE,
                              partials=False, audio_tap=recorder.tap,
                              protocol=str((settings.get("stt") or {}).get("protocol", "vosk")))

    async def handle_media(outs: list[Any]) -> None:
        if router is not None:
            await router.handle(outs)
            return
        from streams.core.media import Note, StreamEnded

        for o in outs:  # no STT: record audio, still finish calls
            if isinstance(o, AudioChunk):
                recorder.tap(o)
            elif isinstance(o, (StreamEnded, Note)):
                on_call_event(o.call_key.encode(), o.to_call_event())

    async def handle_dialog(outs: list[Any]) -> None:
        for o in outs:
            if isinstance(o, BindingOut):
                await handle_media(joiner.on_binding(o.value))
            elif isinstance(o, CallEventOut):
                emit_calls(assembler.on_call_event(o.value))

    sink = _ListSink()
    edge = EdgePipeline(EdgeConfig(site=site, edge_id=f"transcribe/{os.path.basename(path)}"), sink)
    size = os.path.getsize(path) if path != "-" else 0
    progress = _Progress(size)
    last_ts = 0
    n = 0
    read_error: PcapError | None = None
    with open_capture(path) as f:
        try:
            for ts_us, linktype, frame in read_capture(f, progress=progress):
                edge.process(ts_us, linktype, frame)
                last_ts = max(last_ts, ts_us)
                for kind, rec in sink.take():
                    if kind == "sip":
                        await handle_dialog(tracker.on_sip(rec))
                    else:
                        await handle_media(joiner.on_rtp_batch(rec))
                n += 1
                if n % 500 == 0:
                    await handle_dialog(tracker.expire(last_ts))
                    await handle_media(joiner.expire(last_ts))
                    await asyncio.sleep(0)  # let STT readers run
        except PcapError as exc:  # corrupt record (e.g. garbage appended): keep every call read before it
            read_error = exc
    progress.done()
    edge.finish()
    for kind, rec in sink.take():
        if kind == "sip":
            await handle_dialog(tracker.on_sip(rec))
        else:
            await handle_media(joiner.on_rtp_batch(rec))
    # End of capture: every call still open (no BYE seen: a cut capture) times out at the last packet's
    # time, so its bindings close then and its streams end after the joiner's grace; any stream left
    # is flushed. (Expiring at END_OF_TIME_US instead closed bindings "at the end of time", which the
    # joiner never reached: such calls were silently lost.)
    end_us = last_ts + 1
    tracker.config = dataclasses.replace(tracker.config, timeout_s=0, setup_timeout_s=0)
    await handle_dialog(tracker.expire(end_us))
    await handle_media(joiner.expire(end_us + joiner.close_grace_us))
    await handle_media(joiner.flush_all())
    if router is not None:
        await router.drain()
    emit_calls(assembler.expire(END_OF_TIME_US))
    for call in calls:
        name = safe_name(call["call_id"])
        (out_dir / f"{name}.json").write_text(json.dumps(call, indent=2, sort_keys=True))
        for speaker in ("caller", "callee"):
            pcm = recorder.pcm(f"{call['site']}/{call['call_id']}", speaker)
            if pcm.size:
                write_wav(out_dir / f"{name}.{speaker}.wav", pcm, rate=wav_rate)
    if read_error is not None:
        raise CaptureReadError(str(read_error), calls)
    return calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _with_local_engine(args: argparse.Namespace, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the reference STT engine in this process (its own task on this loop) and transcribe."""
    from spanscribe.stt.server import serve_forever

    port = _free_port()
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve_forever(argparse.Namespace(
        host="127.0.0.1", port=port, model=args.model, engine="whisper", max_sessions=64, threads=2), stop))
    url = f"ws://127.0.0.1:{port}"
    # wait until it listens (model load takes a few seconds)
    for _ in range(600):
        if server.done():
            server.result()
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            await w.wait_closed()
            break
        except OSError:
            await asyncio.sleep(0.1)
    try:
        return await transcribe_file(args.file, Path(args.out), settings, [url], site=args.site,
                                     max_sessions=settings["stt"]["max_sessions"])
    finally:
        stop.set_result(None)
        await server


def print_summary(calls: list[dict[str, Any]], out_dir: Path, elapsed_s: float) -> None:
    print(f"\n{len(calls)} call(s) in {elapsed_s:.1f}s -> {out_dir}/")
    print(f"{'call':<40} {'dur':>6} {'end':<9} {'segs':>4}  streams")
    for c in calls:
        dur = (c["end_us"] - c["start_us"]) / 1e6
        streams = ", ".join(f"{s['speaker']} {s['codec']} {s['packets']}p lost {s['lost']}" for s in c["streams"])
        print(f"{c['call_id'][:40]:<40} {dur:6.1f} {c['end_reason']:<9} {len(c['segments']):>4}  {streams}")
        for note in c["notes"]:
            print(f"{'':<40} note: {note}")


def run(args: argparse.Namespace) -> int:
    settings = args.settings
    t0 = time.monotonic()
    out_dir = Path(args.out)
    if not os.path.exists(args.file) and args.file != "-":
        print(f"spanscribe transcribe: {args.file}: no such file", file=sys.stderr)
        return 2
    wav_rate = int(getattr(args, "wav_rate", None) or STT_RATE)
    if wav_rate != STT_RATE and not args.no_stt:
        print(f"spanscribe transcribe: --wav-rate {wav_rate} needs --no-stt (STT gets {STT_RATE} Hz)",
              file=sys.stderr)
        return 2
    try:
        if args.no_stt:
            calls = asyncio.run(transcribe_file(args.file, out_dir, settings, None, site=args.site,
                                                wav_rate=wav_rate))
        elif args.stt_url:
            calls = asyncio.run(transcribe_file(args.file, out_dir, settings, settings["stt"]["urls"],
                                                site=args.site, max_sessions=settings["stt"]["max_sessions"]))
        else:
            calls = asyncio.run(_with_local_engine(args, settings))
    except CaptureReadError as exc:  # corrupt part way: the calls before it are kept and written
        print(f"spanscribe transcribe: {args.file}: {exc} (kept {len(exc.calls)} call(s) read before it)",
              file=sys.stderr)
        print_summary(exc.calls, out_dir, time.monotonic() - t0)
        return 1
    except ValueError as exc:  # PcapError and friends: one line
        print(f"spanscribe transcribe: {args.file}: {exc}", file=sys.stderr)
        return 1
    print_summary(calls, out_dir, time.monotonic() - t0)
    for c in calls:
        print(f"\n--- {c['call_id']}")
        for s in c["segments"]:
            who = s.get("role") or s["speaker"]
            print(f"  {s['start_s']:7.2f}s {who:>8}: {s['text']}")
    return 0
