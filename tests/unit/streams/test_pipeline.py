"""The whole pure core over real captures: dialogs -> bindings -> joiner -> (fake STT) -> assembler.

Expected numbers come from tshark (``tshark -q -z rtp,streams``), not from our own output.
"""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from streams_helpers import avro_roundtrip, batches, rtp_packets, sip_records

from streams.core import (
    AudioChunk,
    BindingOut,
    CallAssembler,
    CallEventOut,
    DialogTracker,
    MediaJoiner,
    Note,
    StreamEnded,
)
from streams.core.stt_protocol import Final, to_segment


def run(path: Any) -> tuple[list[Any], list[dict[str, Any]], MediaJoiner, list[Any]]:
    tracker = DialogTracker()
    joiner = MediaJoiner()
    asm = CallAssembler()
    docs: list[dict[str, Any]] = []
    media_out: list[Any] = []
    heard: dict[tuple[str, str], list[AudioChunk]] = {}

    def media(outs: list[Any]) -> None:
        for o in outs:
            media_out.append(o)
            if isinstance(o, AudioChunk):
                heard.setdefault((o.call_key, o.speaker), []).append(o)
            elif isinstance(o, Note):
                docs.extend(asm.on_call_event(o.to_call_event()))
            elif isinstance(o, StreamEnded):  # fake STT: one final per stream, then stream_ended
                cs = heard.pop((o.call_key, o.speaker), [])
                if cs:
                    res = Final(f"{o.speaker} {sum(c.pcm.size for c in cs) / 16000:.1f}", (),
                                cs[0].start_s, cs[-1].end_s)
                    seg = to_segment(site=o.site, call_id=o.call_id, speaker=o.speaker, role=cs[0].role,
                                     result=res, engine="fake")
                    docs.extend(asm.on_segment(seg))
                docs.extend(asm.on_call_event(o.to_call_event()))

    def dialog(outs: list[Any]) -> None:
        for o in outs:
            if isinstance(o, BindingOut):
                media(joiner.on_binding(o.value))
            elif isinstance(o, CallEventOut):
                docs.extend(asm.on_call_event(o.value))

    items = [(r["capture_ts_us"], 0, r) for r in sip_records(path)]
    items += [(b["flush_ts_us"], 1, b) for b in batches(rtp_packets(path))]
    items.sort(key=lambda x: (x[0], x[1]))
    for ts, kind, rec in items:
        if kind == 0:
            dialog(tracker.on_sip(rec))
        else:
            media(joiner.on_rtp_batch(rec))
        media(joiner.expire(ts))
    end = items[-1][0] + 10_000_000
    dialog(tracker.expire(end + int(tracker.config.timeout_s * 1e6)))
    media(joiner.expire(end + int(tracker.config.timeout_s * 1e6)))
    media(joiner.flush_all())
    docs.extend(asm.expire(end + int(tracker.config.timeout_s * 1e6) + 10**9))
    for d in docs:
        assert avro_roundtrip("CallTranscript", d) == d
    return docs, [], joiner, media_out


@pytest.mark.capture
def test_early_media_call_to_transcript(capture: Any) -> None:
    docs, _, joiner, _ = run(capture("magicjack-early-media-183.pcap"))
    final = {d["call_id"]: d for d in docs}
    assert len(final) == 1
    d = next(iter(final.values()))
    assert d["end_reason"] == "bye" and d["answer_us"] is not None
    assert {s["speaker"] for s in d["segments"]} == {"caller", "callee"}
    stats = {(s["speaker"], s["stream_key"]): s for s in d["streams"]}
    # tshark -Y "udp.dstport==P && frame.time_relative < 178.844196" (the BYE): 626 packets to
    # 192.168.0.10:49154 (caller's address: the callee speaking), 638 of the 642 to 216.234.64.16:54550
    # (callee's address: the caller speaking); the 4 sent after the BYE belong to no call
    assert stats[("callee", "s1/192.168.0.10/49154")]["packets"] == 626
    assert stats[("caller", "s1/216.234.64.16/54550")]["packets"] == 638
    assert all(s["lost"] == 0 and s["codec"] == "PCMU" for s in d["streams"])
    # ~12.5 s of early media + talk each way (tshark start/end times)
    for s in d["streams"]:
        assert 12.0 < s["audio_s"] < 13.5, s
    assert joiner.counters["unmatched_packets"] >= 4


@pytest.mark.capture
def test_rfc2833_capture_digits_removed(capture: Any) -> None:
    path = capture("sip-dtmf-rfc2833-g711a.cap")
    docs, _, joiner, outs = run(path)
    # tshark: 35 RTP event packets (PT 96) in the stream to 192.168.105.110:4376, the one SDP announced;
    # the 665-packet stream to 192.168.105.172:4376 was never announced in this capture -> unmatched
    assert joiner.counters["non_audio_packets"] == 35
    assert joiner.counters["unmatched_packets"] == 665 and joiner.counters["unmatched_streams"] == 1
    events = {p.payload for p in rtp_packets(path) if p.pt == 96}
    assert events
    text = repr(outs) + repr(docs) + json.dumps(joiner.snapshot()) + json.dumps(
        [o.to_call_event() for o in outs if isinstance(o, StreamEnded | Note)])
    for ev in events:
        for needle in (ev.hex(), repr(ev)[2:-1], base64.b64encode(ev).decode()):
            assert needle not in text
    calls = {d["call_id"]: d for d in docs}
    late = calls["25672@192.168.105.110"]
    assert late["end_reason"] == "timeout"  # no BYE in the capture
    assert [s["speaker"] for s in late["segments"]] == ["caller"]
    assert 19.0 < late["streams"][0]["audio_s"] < 21.0  # tshark: 76.88 s .. 96.83 s
    assert calls["5514@192.168.105.110"]["end_reason"] == "rejected"
