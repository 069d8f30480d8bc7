"""``spanscribe tail``: follow the transcripts and calls topics and print what arrives.

Readable by default (one line per final segment: time, call, speaker, text; a block per finished call),
or one JSON object per line with ``--json``. Transcript text is printed because the operator asked for
it on their terminal; it is never logged.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from typing import Any, TextIO

from schemas.codec import AvroCodec
from spanscribe.config import kafka_config, topic
from spanscribe.records import decode_message


def format_segment(seg: dict[str, Any]) -> str:
    who = seg.get("role") or seg["speaker"]
    mark = "" if seg["is_final"] else " (partial)"
    return f"[{seg['site']}/{seg['call_id']}] {seg['start_s']:7.2f}s {who:>8}: {seg['text']}{mark}"


def format_call(call: dict[str, Any]) -> str:
    dur = (call["end_us"] - call["start_us"]) / 1e6
    lines = [f"=== call {call['site']}/{call['call_id']}  {call.get('caller') or '?'} -> {call.get('callee') or '?'}"
             f"  {dur:.1f}s  ended: {call['end_reason']}"]
    for s in call["segments"]:
        who = s.get("role") or s["speaker"]
        lines.append(f"  {s['start_s']:7.2f}-{s['end_s']:7.2f}s {who:>8}: {s['text']}")
    for st in call["streams"]:
        lines.append(f"  stream {st['speaker']:>6} {st['codec']:<6} packets {st['packets']} lost {st['lost']} "
                     f"jitter {st['jitter_ms']:.1f} ms audio {st['audio_s']:.1f}s")
    for n in call["notes"]:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    return v


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from confluent_kafka import Consumer

    settings = args.settings
    name = "calls" if args.calls else "transcripts"
    codec = AvroCodec("CallTranscript" if args.calls else "TranscriptSegment")
    consumer = Consumer(kafka_config(settings, **{
        "group.id": f"spanscribe-tail-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if args.from_beginning else "latest"}))
    consumer.subscribe([topic(settings, name)])
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    shown = 0
    last = time.monotonic()
    try:
        while not stop:
            msgs = consumer.consume(100, timeout=0.5)
            if not msgs and args.timeout_s and time.monotonic() - last > args.timeout_s:
                break
            for m in msgs:
                if m.error():
                    continue
                last = time.monotonic()
                rec = decode_message(codec, m)
                if rec is None:
                    continue
                if args.call_id and rec["call_id"] != args.call_id:
                    continue
                if args.site and rec["site"] != args.site:
                    continue
                if not args.calls and not rec["is_final"] and not args.partials:
                    continue
                if args.json:
                    out.write(json.dumps(rec, default=_jsonable, sort_keys=True) + "\n")
                else:
                    out.write((format_call(rec) if args.calls else format_segment(rec)) + "\n")
                out.flush()
                shown += 1
                if args.count and shown >= args.count:
                    return 0
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
