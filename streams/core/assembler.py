"""Finished call documents: TranscriptSegments + CallEvents -> one CallTranscript per call.

Keyed by ``"site/Call-ID"``; state in a ``MutableMapping[str, dict]`` (a dict or a Faust table),
JSON-able and reassigned after every change.

A call is complete when its ``call_ended`` arrived and every speaker it lists reported a
``stream_ended`` at or after the end (the media side reports one when the binding closes, even for a
stream that carried no RTP). The shell sends ``stream_ended`` after the STT session of that speaker
has returned its last final result, so the segments are in. Should a final segment still arrive after
the document was emitted (topics are consumed independently), the document is emitted again with it:
the calls topic is compacted, the latest version wins. ``expire`` emits calls whose speakers never
reported (with a note) and forgets emitted calls after ``linger_s``.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AssemblerConfig", "CallAssembler"]


@dataclass(frozen=True, slots=True)
class AssemblerConfig:
    """Seconds of capture time.

    ``speaker_timeout_s``: after call_ended, how long to wait for the speakers' stream_ended.
    ``orphan_timeout_s``: a call with segments/events but no call_ended, idle this long, is emitted
    (end_reason "timeout"). ``linger_s``: an emitted call is kept this long for late segments.
    """

    speaker_timeout_s: float = 120.0
    orphan_timeout_s: float = 5 * 3600.0
    linger_s: float = 600.0


def _new(site: str, call_id: str) -> dict[str, Any]:
    return {"site": site, "call_id": call_id, "caller": None, "callee": None, "start_us": None,
            "answer_us": None, "end_us": None, "end_reason": None, "speakers": None, "ended": {},
            "segments": {}, "streams": [], "notes": [], "emitted_us": None, "last_us": 0}


class CallAssembler:
    """Collects one call's final segments and lifecycle events; emits CallTranscript dicts."""

    def __init__(self, config: AssemblerConfig | None = None,
                 store: MutableMapping[str, dict[str, Any]] | None = None) -> None:
        self.config = config or AssemblerConfig()
        self.store: MutableMapping[str, dict[str, Any]] = store if store is not None else {}
        self.counters: dict[str, int] = {"duplicate_segments": 0, "late_segments": 0, "emitted": 0}

    def on_segment(self, seg: dict[str, Any]) -> list[dict[str, Any]]:
        """A TranscriptSegment dict. Partials are ignored; a repeated segment_id is dropped."""
        if not seg.get("is_final"):
            return []
        key = f"{seg['site']}/{seg['call_id']}"
        call = self._load(key, str(seg["site"]), str(seg["call_id"]))
        sid = str(seg["segment_id"])
        if sid in call["segments"]:
            self.counters["duplicate_segments"] += 1
            return []
        call["segments"][sid] = {"speaker": seg["speaker"], "role": seg.get("role"), "start_s": float(seg["start_s"]),
                                 "end_s": float(seg["end_s"]), "text": seg["text"]}
        if call["emitted_us"] is not None:
            self.counters["late_segments"] += 1
            self.store[key] = call
            return [self._document(call)]  # re-emit: compaction keeps the latest
        return self._check(key, call)

    def on_call_event(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        """A CallEvent dict (call_started, call_ended, stream_ended, note)."""
        key = f"{ev['site']}/{ev['call_id']}"
        call = self._load(key, str(ev["site"]), str(ev["call_id"]))
        ts = int(ev["ts_us"])
        call["last_us"] = max(int(call["last_us"]), ts)
        kind = ev["kind"]
        if kind in ("call_started", "call_ended"):
            for f in ("caller", "callee", "start_us"):
                if ev.get(f) is not None:
                    call[f] = ev[f]
        if kind == "call_ended":
            call["end_us"] = ts
            call["end_reason"] = ev.get("end_reason") or "bye"
            call["answer_us"] = ev.get("answer_us")
            call["speakers"] = sorted(set(ev.get("speakers") or []))
        elif kind == "stream_ended" and ev.get("stream"):
            s = dict(ev["stream"])
            sp = str(s["speaker"])
            call["ended"][sp] = max(int(call["ended"].get(sp, ts)), ts)
            if s not in call["streams"]:
                call["streams"].append(s)
        elif kind == "note" and ev.get("note"):
            if ev["note"] not in call["notes"]:
                call["notes"].append(str(ev["note"]))
        if call["emitted_us"] is not None:
            self.store[key] = call
            changed = kind in ("stream_ended", "note")
            return [self._document(call)] if changed else []
        return self._check(key, call)

    def expire(self, now_us: int) -> list[dict[str, Any]]:
        """Emit calls whose speakers never reported, or that never ended; forget old emitted calls."""
        cfg = self.config
        out: list[dict[str, Any]] = []
        for key in sorted(self.store.keys()):
            call = self.store[key]
            if call["emitted_us"] is not None:
                if now_us - int(call["emitted_us"]) > cfg.linger_s * 1e6:
                    del self.store[key]
                continue
            if call["end_us"] is not None:
                if now_us - int(call["end_us"]) > cfg.speaker_timeout_s * 1e6:
                    call = dict(call)
                    missing = [s for s in call["speakers"] or [] if not self._speaker_done(call, s)]
                    for s in missing:
                        note = f"no end of the {s} stream within {cfg.speaker_timeout_s:g} s: transcript may be incomplete"
                        if note not in call["notes"]:
                            call["notes"] = [*call["notes"], note]
                    out.append(self._emit(key, call, now_us))
            elif now_us - int(call["last_us"]) > cfg.orphan_timeout_s * 1e6:
                call = dict(call)
                call["end_us"] = int(call["last_us"])
                call["end_reason"] = "timeout"
                call["notes"] = [*call["notes"], "the end of the call was never seen"]
                out.append(self._emit(key, call, now_us))
        return out

    def snapshot(self, call_key: str) -> dict[str, Any] | None:
        c = self.store.get(call_key)
        return None if c is None else _copy(c)

    def restore(self, call_key: str, state: dict[str, Any]) -> None:
        self.store[call_key] = _copy(state)

    # -- internals ----------------------------------------------------------------------------------
    def _load(self, key: str, site: str, call_id: str) -> dict[str, Any]:
        c = self.store.get(key)
        return _new(site, call_id) if c is None else _copy(c)

    def _speaker_done(self, call: dict[str, Any], speaker: str) -> bool:
        t = call["ended"].get(speaker)
        return t is not None and int(t) >= int(call["end_us"])

    def _check(self, key: str, call: dict[str, Any]) -> list[dict[str, Any]]:
        if call["end_us"] is not None and all(self._speaker_done(call, s) for s in call["speakers"] or []):
            return [self._emit(key, call, int(call["end_us"]))]
        self.store[key] = call
        return []

    def _emit(self, key: str, call: dict[str, Any], now_us: int) -> dict[str, Any]:
        call["emitted_us"] = now_us
        self.store[key] = call
        self.counters["emitted"] += 1
        return self._document(call)

    def _document(self, call: dict[str, Any]) -> dict[str, Any]:
        segs = sorted(call["segments"].items(),
                      key=lambda kv: (kv[1]["start_s"], kv[1]["end_s"], kv[1]["speaker"], kv[0]))
        streams = [s for s in call["streams"] if int(s.get("packets", 0)) > 0]
        streams.sort(key=lambda s: (s["speaker"], s["stream_key"], s["ssrc"]))
        start = call["start_us"] if call["start_us"] is not None else call["end_us"]
        return {
            "site": call["site"], "call_id": call["call_id"], "caller": call["caller"], "callee": call["callee"],
            "start_us": int(start or 0), "answer_us": call["answer_us"], "end_us": int(call["end_us"] or 0),
            "end_reason": call["end_reason"] or "timeout",
            "segments": [{"speaker": s["speaker"], "role": s["role"], "start_s": s["start_s"], "end_s": s["end_s"],
                          "text": s["text"]} for _, s in segs],
            "streams": [{k: s[k] for k in ("speaker", "stream_key", "ssrc", "codec", "packets", "lost",
                                           "duplicates", "jitter_ms", "audio_s")} for s in streams],
            "notes": sorted(call["notes"]),
        }


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v
