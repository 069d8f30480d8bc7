"""MediaJoiner: the join, pending RTP, port reuse, re-INVITE, encrypted, unknown codec, DTMF removal."""
from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from streams_helpers import batch, batches, rtp_packets, sip_records, synth_entry

from streams.core.codecs import ULAW_TABLE, resample
from streams.core.dialog import BindingOut, DialogTracker
from streams.core.media import AudioChunk, MediaJoiner, Note, StreamEnded

T0 = 1_700_000_000_000_000
IP, PORT = "10.1.0.10", 4000
KEY = f"s1/{IP}/{PORT}"
PCMU = [{"payload_type": 0, "encoding": "PCMU", "clock_rate": 8000, "channels": 1, "fmtp": None},
        {"payload_type": 101, "encoding": "telephone-event", "clock_rate": 8000, "channels": 1, "fmtp": "0-16"}]


def binding(call: str = "c1", frm: int = T0, until: int | None = None, key: str = KEY, version: int = 1,
            speaker: str = "callee", pmap: list[dict[str, Any]] | None = None, encrypted: bool = False,
            start: int = T0) -> dict[str, Any]:
    return {"stream_key": key, "site": "s1", "call_id": call, "speaker": speaker, "role": None,
            "call_start_us": start, "valid_from_us": frm, "valid_until_us": until, "version": version,
            "encrypted": encrypted, "payload_map": pmap if pmap is not None else PCMU}


def tone_payloads(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=160, dtype=np.uint8).tobytes() for _ in range(n)]


def rtp(seq0: int, n: int, t_us: int, payloads: list[bytes] | None = None, ts0: int = 0, key_ip: str = IP,
        port: int = PORT, pts: list[int] | None = None, ssrc: int = 0x1234) -> dict[str, Any]:
    payloads = payloads if payloads is not None else tone_payloads(n, seq0)
    return synth_entry(key_ip, port, [(seq0 + i) & 0xFFFF for i in range(n)], [ts0 + 160 * (seq0 + i) for i in range(n)],
                       [t_us + 20_000 * i for i in range(n)], payloads, pts=pts, ssrc=ssrc)


def chunks(outs: list[Any], speaker: str | None = None) -> list[AudioChunk]:
    return [o for o in outs if isinstance(o, AudioChunk) and (speaker is None or o.speaker == speaker)]


def audio(outs: list[Any]) -> np.ndarray:
    cs = chunks(outs)
    return np.concatenate([c.pcm for c in cs]) if cs else np.zeros(0, dtype=np.int16)


def run_stream(j: MediaJoiner, pays: list[bytes], t0: int = T0 + 1_000_000, per_batch: int = 5) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(pays), per_batch):
        part = pays[i:i + per_batch]
        out += j.on_rtp_batch(batch([rtp(i, len(part), t0 + i * 20_000, part)], t0 + (i + per_batch) * 20_000))
    return out


def test_decoded_audio_times_and_continuity() -> None:
    j = MediaJoiner(window_ms=60)
    assert j.on_binding(binding()) == []
    pays = tone_payloads(50)
    out = run_stream(j, pays)
    out += j.on_binding(binding(until=T0 + 3_000_000))
    out += j.expire(T0 + 4_000_000)
    cs = chunks(out)
    assert cs and all(c.speaker == "callee" and c.call_key == "s1/c1" and c.sample_rate == 16000 for c in cs)
    assert cs[0].start_s == pytest.approx(1.0)  # first packet captured 1 s after the INVITE
    for a, b in zip(cs, cs[1:], strict=False):
        assert b.start_s == pytest.approx(a.end_s, abs=1e-6)  # contiguous
    expect = resample(ULAW_TABLE[np.frombuffer(b"".join(pays), dtype=np.uint8)], 8000, 16000)
    np.testing.assert_array_equal(audio(out), expect)
    ended = [o for o in out if isinstance(o, StreamEnded)]
    assert len(ended) == 1 and ended[0].ts_us == T0 + 3_000_000 and ended[0].reason == "closed"
    st = ended[0].stats
    assert (st["packets"], st["lost"], st["duplicates"], st["codec"]) == (50, 0, 0, "PCMU")
    assert st["audio_s"] == pytest.approx(1.0)
    ev = ended[0].to_call_event()
    assert ev["kind"] == "stream_ended" and ev["stream"]["stream_key"] == KEY


def test_rtp_before_binding_is_pending_then_replayed() -> None:
    pays = tone_payloads(20)
    ref = MediaJoiner(window_ms=60)
    ref.on_binding(binding())
    want = run_stream(ref, pays) + ref.flush_all(T0 + 5_000_000)
    j = MediaJoiner(window_ms=60)
    early = run_stream(j, pays)
    assert chunks(early) == [] and j.pending_packets == 20
    got = j.on_binding(binding()) + j.flush_all(T0 + 5_000_000)
    np.testing.assert_array_equal(audio(got), audio(want))
    assert [c.start_s for c in chunks(got)][0] == chunks(want)[0].start_s
    assert j.counters["unmatched_packets"] == 0


def test_pending_expires_as_unmatched() -> None:
    j = MediaJoiner(max_pending_s=1.0)
    j.on_rtp_batch(batch([rtp(0, 5, T0)], T0 + 100_000))
    j.on_rtp_batch(batch([rtp(0, 5, T0 + 5_000_000, key_ip="10.7.7.7")], T0 + 5_100_000))
    assert j.counters["unmatched_packets"] == 5 and j.counters["unmatched_streams"] == 1
    j.expire(T0 + 10_000_000)
    assert j.counters["unmatched_packets"] == 10 and j.counters["unmatched_streams"] == 2
    assert j.pending_packets == 0


def test_pending_is_bounded_by_bytes() -> None:
    j = MediaJoiner(max_pending_bytes=2000)
    for i in range(5):
        j.on_rtp_batch(batch([rtp(i * 5, 5, T0 + i * 100_000, key_ip=f"10.7.7.{i}")], T0 + i * 100_000 + 100_000))
    assert j.counters["pending_dropped"] > 0
    assert j.pending_packets * 176 <= 2000


def test_two_calls_reuse_a_port_one_after_the_other() -> None:
    j = MediaJoiner(window_ms=40)
    out = j.on_binding(binding("A", frm=T0, start=T0))
    out += j.on_rtp_batch(batch([rtp(0, 10, T0 + 500_000)], T0 + 800_000))
    out += j.on_binding(binding("A", frm=T0, until=T0 + 1_000_000, start=T0))
    t1 = T0 + 2_000_000
    out += j.on_binding(binding("B", frm=t1, start=t1))
    out += j.on_rtp_batch(batch([rtp(5000, 10, t1 + 300_000, ssrc=99)], t1 + 600_000))
    out += j.flush_all(t1 + 5_000_000)
    a = [c for c in chunks(out) if c.call_id == "A"]
    b = [c for c in chunks(out) if c.call_id == "B"]
    assert sum(c.pcm.size for c in a) == sum(c.pcm.size for c in b) == 10 * 320
    assert a[0].start_s == pytest.approx(0.5) and b[0].start_s == pytest.approx(0.3)
    ends = [(o.call_id, o.ts_us) for o in out if isinstance(o, StreamEnded)]
    assert ends[0] == ("A", T0 + 1_000_000)
    assert [c for c, _ in ends] == ["A", "B"]


def test_reinvite_to_new_port_mid_call_via_dialog() -> None:
    from streams_helpers import sdp, sip_raw, sip_record
    t = DialogTracker()
    j = MediaJoiner(window_ms=40)
    cid = "mid@x"
    ts = T0
    outs: list[Any] = []

    def sip(raw: bytes, at: int) -> None:
        for o in t.on_sip(sip_record(raw, at)):
            if isinstance(o, BindingOut):
                outs.extend(j.on_binding(o.value))

    sip(sip_raw("INVITE sip:b SIP/2.0", cid, "1 INVITE", "f", None, sdp(IP, 4000)), ts)
    sip(sip_raw("SIP/2.0 200 OK", cid, "1 INVITE", "f", "t", sdp("10.2.0.20", 6000)), ts + 100_000)
    outs += j.on_rtp_batch(batch([rtp(0, 25, ts + 200_000)], ts + 700_000))  # 0.5 s to the caller's port
    sip(sip_raw("INVITE sip:b SIP/2.0", cid, "2 INVITE", "f", "t", sdp(IP, 4002)), ts + 800_000)
    sip(sip_raw("SIP/2.0 200 OK", cid, "2 INVITE", "f", "t", sdp("10.2.0.20", 6000)), ts + 810_000)
    outs += j.on_rtp_batch(batch([rtp(25, 25, ts + 820_000, port=4002)], ts + 1_400_000))
    sip(sip_raw("BYE sip:b SIP/2.0", cid, "3 BYE", "f", "t"), ts + 2_000_000)
    outs += j.expire(ts + 3_000_000)
    cs = chunks(outs, "callee")
    keys = sorted({c.stream_key for c in cs})
    assert keys == [f"s1/{IP}/4000", f"s1/{IP}/4002"]
    assert sum(c.pcm.size for c in cs) == 50 * 320
    old = [c for c in cs if c.stream_key.endswith("/4000")]
    new = [c for c in cs if c.stream_key.endswith("/4002")]
    assert old[0].start_s == pytest.approx(0.2) and new[0].start_s == pytest.approx(0.82)
    ends = sorted((o.stream_key, o.speaker, o.ts_us) for o in outs if isinstance(o, StreamEnded))
    assert ends == [(f"s1/{IP}/4000", "callee", ts + 800_000), (f"s1/{IP}/4002", "callee", ts + 2_000_000),
                    ("s1/10.2.0.20/6000", "caller", ts + 2_000_000)]  # no RTP, still reported


def test_encrypted_stream_noted_not_transcribed() -> None:
    j = MediaJoiner(window_ms=40)
    j.on_binding(binding(encrypted=True))
    out = run_stream(j, tone_payloads(10))
    out += j.flush_all(T0 + 5_000_000)
    assert chunks(out) == []
    notes = [o.text for o in out if isinstance(o, Note)]
    assert notes == ["callee RTP stream is encrypted (SRTP/ZRTP): not transcribed"]
    ended = [o for o in out if isinstance(o, StreamEnded)]
    assert ended[0].stats["packets"] == 10 and ended[0].stats["audio_s"] == 0.0
    assert j.counters["encrypted_packets"] == 10


def test_unknown_codec_noted_not_transcribed() -> None:
    j = MediaJoiner(window_ms=40)
    j.on_binding(binding(pmap=[{"payload_type": 96, "encoding": "opus", "clock_rate": 48000, "channels": 2,
                                "fmtp": None}]))
    out = j.on_rtp_batch(batch([rtp(0, 10, T0 + 100_000, pts=[96] * 10)], T0 + 400_000))
    out += j.on_rtp_batch(batch([rtp(10, 2, T0 + 500_000, pts=[18] * 2)], T0 + 600_000))
    out += j.flush_all(T0 + 5_000_000)
    assert chunks(out) == []
    assert sorted(o.text for o in out if isinstance(o, Note)) == [
        "callee RTP payload type 18 was not negotiated: not transcribed",
        "callee codec opus/48000 is not supported: not transcribed"]
    assert j.counters["unknown_codec_packets"] == 12


def test_telephone_event_removed_and_digit_nowhere() -> None:
    # 10 audio packets, 6 RFC 4733 packets for one digit (same event-start ts), 10 audio packets
    digit_payload = bytes([7, 0x0A, 0x01, 0x40])  # event 7 ("7"), volume 10, duration 320
    pays = tone_payloads(10, 1) + [digit_payload] * 6 + tone_payloads(10, 2)
    pts = [0] * 10 + [101] * 6 + [0] * 10
    ts = [160 * i for i in range(10)] + [1600] * 6 + [1600 + 160 * (6 + i) for i in range(10)]
    seqs = list(range(26))
    j = MediaJoiner(window_ms=40)
    j.on_binding(binding())
    ent = synth_entry(IP, PORT, seqs, ts, [T0 + 100_000 + 20_000 * i for i in range(26)], pays, pts=pts)
    out = j.on_rtp_batch(batch([ent], T0 + 700_000))
    snap = json.dumps(j.snapshot())
    out += j.flush_all(T0 + 5_000_000)
    pcm = audio(out)
    assert pcm.size == 26 * 320  # 20 audio packets and 6 packets' time of silence for the event
    assert not pcm[10 * 320 + 64:16 * 320 - 64].any()  # the event's time is silence (64: FIR tails)
    expect_after = resample(ULAW_TABLE[np.frombuffer(b"".join(pays[16:]), dtype=np.uint8)], 8000, 16000)
    assert np.abs(pcm[16 * 320 + 64:].astype(int) - expect_after[64:].astype(int)).max() <= 1
    text = repr(out) + snap + json.dumps([o.to_call_event() for o in out if not isinstance(o, AudioChunk)])
    for needle in (digit_payload.hex(), repr(digit_payload), base64.b64encode(digit_payload).decode()[:6],
                   "event 7", "digit"):
        assert needle not in text
    assert j.counters["non_audio_packets"] == 6
    assert [o for o in out if isinstance(o, Note)] == []


def test_snapshot_restore_midstream_same_output() -> None:
    pays = tone_payloads(40)

    def run(split: bool) -> np.ndarray:
        j = MediaJoiner(window_ms=60)
        j.on_binding(binding())
        out = run_stream(j, pays[:20])
        if split:
            state = json.loads(json.dumps(j.snapshot_stream(KEY)))
            j2 = MediaJoiner(window_ms=60, index=j.index)
            j2.restore_stream(KEY, state)
            j = j2
        out += run_stream(j, pays[20:], t0=T0 + 1_000_000 + 20 * 20_000)
        out += j.flush_all(T0 + 9_000_000)
        return audio(out)

    np.testing.assert_array_equal(run(True), run(False))


def test_g722_and_l16_streams() -> None:
    j = MediaJoiner(window_ms=40)
    g722 = [{"payload_type": 9, "encoding": "G722", "clock_rate": 8000, "channels": 1, "fmtp": None}]
    j.on_binding(binding(pmap=g722))
    out = j.on_rtp_batch(batch([rtp(0, 10, T0 + 100_000, pts=[9] * 10)], T0 + 400_000))
    out += j.flush_all(T0 + 5_000_000)
    assert audio(out).size == 10 * 320  # G.722 is 16 kHz: no resampling, 2 samples per byte
    j = MediaJoiner(window_ms=40)
    l16 = [{"payload_type": 97, "encoding": "L16", "clock_rate": 8000, "channels": 1, "fmtp": None}]
    j.on_binding(binding(pmap=l16))
    pays = [p + p for p in tone_payloads(10)]  # 320 bytes = 160 L16 samples = 160 ticks (20 ms)
    out = j.on_rtp_batch(batch([rtp(0, 10, T0 + 100_000, pays, pts=[97] * 10)], T0 + 400_000))
    out += j.flush_all(T0 + 5_000_000)
    pcm = audio(out)
    assert pcm.size == 10 * 320
    be = np.frombuffer(b"".join(pays), dtype=">i2").astype(np.int16)
    np.testing.assert_array_equal(pcm, resample(be, 8000, 16000))


def test_idle_stream_ends() -> None:
    j = MediaJoiner(window_ms=40, idle_s=2.0)
    j.on_binding(binding())
    out = j.on_rtp_batch(batch([rtp(0, 5, T0 + 100_000)], T0 + 200_000))
    assert [o for o in j.expire(T0 + 1_000_000) if isinstance(o, StreamEnded)] == []
    ended = [o for o in j.expire(T0 + 3_000_000) if isinstance(o, StreamEnded)]
    assert len(ended) == 1 and ended[0].reason == "idle"
    del out


# -- real captures --------------------------------------------------------------------------------
def _pipeline(path: Any) -> tuple[list[Any], MediaJoiner]:
    """Dialog tracker + joiner over a capture, records interleaved by capture time like the topics."""
    return _join(sip_records(path), batches(rtp_packets(path)), expire=True)


def _join(sips: list[dict[str, Any]], rtps: list[dict[str, Any]], expire: bool) -> tuple[list[Any], MediaJoiner]:
    """SIP through a DialogTracker and RTP batches through one MediaJoiner in capture-time order (the
    joiner's clock advanced after each record with ``expire``), then everything flushed."""
    t = DialogTracker()
    j = MediaJoiner()
    items = [(r["capture_ts_us"], 0, r) for r in sips] + [(b["flush_ts_us"], 1, b) for b in rtps]
    items.sort(key=lambda x: (x[0], x[1]))
    out: list[Any] = []
    for ts, kind, rec in items:
        if kind == 0:
            for o in t.on_sip(rec):
                if isinstance(o, BindingOut):
                    out += j.on_binding(o.value)
        else:
            out += j.on_rtp_batch(rec)
        if expire:
            out += j.expire(ts)
    out += j.flush_all()
    return out, j


@pytest.mark.capture
def test_capture_g711_two_calls(capture: Any) -> None:
    path = capture("sip-rtp-g711.pcap")
    out, j = _pipeline(path)
    pk = rtp_packets(path)
    for cid, pt, table in (("1-1966@10.0.2.20", 0, "u"), ("1-1968@10.0.2.20", 8, "a")):
        cs = [c for c in chunks(out) if c.call_id == cid]
        assert cs and {c.speaker for c in cs} == {"callee"}
        got = np.concatenate([c.pcm for c in cs])
        mine = [p for p in pk if p.pt == pt]
        mine.sort(key=lambda p: p.seq)
        from streams.core.codecs import ALAW_TABLE
        tab = ULAW_TABLE if table == "u" else ALAW_TABLE
        ref = resample(tab[np.frombuffer(b"".join(p.payload for p in mine), dtype=np.uint8)], 8000, 16000)
        assert abs(got.size - ref.size) <= 320 * 3  # losses/gaps are silence of the right length
        n = min(got.size, ref.size, 16000)
        assert np.abs(got[:n].astype(int) - ref[:n].astype(int)).max() <= 1
        # the first audio is at the first RTP packet's capture time relative to the INVITE
        assert 0.0 <= cs[0].start_s < 0.2
    assert j.counters["unmatched_packets"] == 0


@pytest.mark.capture
def test_capture_codec_change_pcmu_to_g722(capture: Any) -> None:
    out, j = _pipeline(capture("sip-codec-change-reinvite.pcap"))
    cs = chunks(out)
    assert {c.speaker for c in cs} == {"caller", "callee"}
    for sp in ("caller", "callee"):
        mine = [c for c in cs if c.speaker == sp]
        total = sum(c.pcm.size for c in mine) / 16000
        assert 5.0 < total < 6.5, (sp, total)  # tshark: ~3 s PCMU then ~3 s G.722 per direction
        starts = [c.start_s for c in mine]
        assert starts == sorted(starts)
    ends = [o for o in out if isinstance(o, StreamEnded)]
    assert {e.stats["codec"] for e in ends} >= {"G722"}
    assert j.counters["unknown_codec_packets"] == 0


def test_reseeding_closed_bindings_ends_nothing_and_knows() -> None:
    j = MediaJoiner(pending_s=2.0)
    assert not j.knows(KEY)
    j.seed([binding("old", until=T0 + 1_000_000)])
    assert j.knows(KEY)
    assert j.on_binding(binding("old", until=T0 + 1_000_000)) == []
    assert j.expire(T0 + 60_000_000) == []
    # but a binding seen open, then closed without RTP, reports its (empty) stream end
    j.on_binding(binding("new", frm=T0 + 2_000_000))
    out = j.on_binding(binding("new", frm=T0 + 2_000_000, until=T0 + 3_000_000)) + j.expire(T0 + 4_000_000)
    ended = [o for o in out if isinstance(o, StreamEnded)]
    assert [(e.call_id, e.stats["packets"]) for e in ended] == [("new", 0)]


@pytest.mark.capture
@pytest.mark.parametrize("name", ["sip-dtmf-rfc2833-g711a.cap", "sip-codec-change-reinvite.pcap"])
def test_capture_audio_independent_of_batching(capture: Any, name: str) -> None:
    path = capture(name)
    sips = sip_records(path)
    pk = rtp_packets(path)

    def run(flush_us: int) -> dict[tuple[str, str], np.ndarray]:
        out, _ = _join(sips, batches(pk, flush_us=flush_us), expire=False)
        res: dict[tuple[str, str], list[np.ndarray]] = {}
        for c in chunks(out):
            res.setdefault((c.call_id, c.speaker), []).append(c.pcm)
        return {k: np.concatenate(v) for k, v in res.items()}

    a, b, c = run(20_000), run(100_000), run(500_000)
    assert a.keys() == b.keys() == c.keys() and a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])


def test_srtp_without_sdp_keys_detected_by_tag_length() -> None:
    j = MediaJoiner(window_ms=40)
    j.on_binding(binding())
    plain = j.on_rtp_batch(batch([rtp(0, 5, T0 + 100_000)], T0 + 200_000))  # 160-byte PCMU: audio
    tagged = [p + b"\x01\x02\x03\x04" for p in tone_payloads(5, 9)]  # + 32-bit auth tag (ZRTP -> SRTP)
    enc = j.on_rtp_batch(batch([rtp(5, 5, T0 + 200_000, tagged)], T0 + 300_000))
    out = plain + enc + j.flush_all(T0 + 5_000_000)
    assert sum(c.pcm.size for c in chunks(out)) == 5 * 320  # only the plain part
    assert [o.text for o in out if isinstance(o, Note)] == [
        "callee RTP stream is encrypted (SRTP/ZRTP): not transcribed"]


@pytest.mark.capture
def test_capture_zrtp_not_transcribed_after_handshake(capture: Any) -> None:
    out, j = _pipeline(capture("asterisk-zfone-zrtp.pcap"))
    # tshark: after the ZRTP handshake (frames 32-..) the PCMU payloads are 164 bytes for 160 ticks
    assert j.counters["encrypted_packets"] > 900
    assert any(isinstance(o, Note) and "encrypted" in o.text for o in out)
    # what was decoded is the short plain-RTP start only
    assert sum(c.pcm.size for c in chunks(out)) / 16000 < 1.0


def test_nat_fallback_joins_by_source_with_the_other_speaker() -> None:
    from streams.core.media import Unmatched
    j = MediaJoiner(window_ms=40, pending_s=1.0, nat_fallback=True)
    # caller behind NAT announced 192.168.1.10:4000 (private); the PBX (callee side) 10.0.0.5:10000
    j.on_binding(binding("n1", key="s1/192.168.1.10/4000", speaker="callee"))
    j.on_binding(binding("n1", key="s1/10.0.0.5/10000", speaker="caller"))
    pays = tone_payloads(10, 3)
    # the PBX sends to the NAT's public address: no binding claims that destination
    ent = synth_entry("203.0.113.5", 31234, list(range(10)), [160 * i for i in range(10)],
                      [T0 + 100_000 + 20_000 * i for i in range(10)], pays, src=("10.0.0.5", 10000))
    out = j.on_rtp_batch(batch([ent], T0 + 400_000))
    assert chunks(out) == []
    out = j.expire(T0 + 2_000_000)
    un = [o for o in out if isinstance(o, Unmatched)]
    assert len(un) == 1 and un[0].source_key == "s1/10.0.0.5/10000"
    assert un[0].entry["stream_key"] == "s1/10.0.0.5/10000" and un[0].entry["count"] == 10
    assert "payloads" not in repr(un[0])
    # the shell re-keys it by source; the worker owning that partition joins it by source
    out = j.on_rtp_batch(batch([un[0].entry], T0 + 2_100_000), by_source=True)
    out += j.on_binding(binding("n1", key="s1/10.0.0.5/10000", speaker="caller", until=T0 + 3_000_000))
    out += j.expire(T0 + 4_000_000)
    # the binding's own (empty) stream ends at close + grace; the by-source one lags by pending_s
    assert [(e.speaker, e.stats["packets"]) for e in out if isinstance(e, StreamEnded)] == [("caller", 0)]
    out += j.expire(T0 + 6_400_000)  # close + grace + pending_s + by_source_grace_ms = 6.5 s
    assert not [o for o in out if isinstance(o, StreamEnded) and o.speaker == "callee"]
    out += j.expire(T0 + 6_600_000)
    cs = chunks(out)
    assert {c.speaker for c in cs} == {"callee"}  # RTP FROM the callee side's tuple: the callee speaking
    assert cs[0].start_s == pytest.approx(0.1)
    expect = resample(ULAW_TABLE[np.frombuffer(b"".join(pays), dtype=np.uint8)], 8000, 16000)
    np.testing.assert_array_equal(np.concatenate([c.pcm for c in cs]), expect)
    ended = [o for o in out if isinstance(o, StreamEnded)]
    assert [(e.speaker, e.stream_key, e.ts_us, e.stats["packets"]) for e in ended] == [
        ("caller", "s1/10.0.0.5/10000", T0 + 3_000_000, 0),  # the binding's own (empty) stream
        ("callee", "s1/10.0.0.5/10000", T0 + 3_000_000, 10)]  # the by-source stream
    assert j.counters["fallback_packets"] == 10 and j.counters["by_source_packets"] == 10
    assert j.counters["unmatched_packets"] == 0
    # without a binding for the source either: counted, not kept
    stray = synth_entry("203.0.113.9", 5, [1, 2], [0, 160], [T0 + 5_000_000, T0 + 5_020_000], [b"\x00"] * 2,
                        src=("10.9.9.9", 7))
    stray["stream_key"] = "s1/10.9.9.9/7"
    j.on_rtp_batch(batch([stray], T0 + 5_100_000), by_source=True)
    assert j.counters["unmatched_packets"] == 2 and j.pending_packets == 0


def test_nat_fallback_tail_after_the_close_stays_one_stream() -> None:
    """RTP joined by source arrives pending_s late: the last pending_s of a call comes after the binding
    closed (and after close + grace on this joiner's clock). It must still join the same stream, and a
    by-source miss is counted unmatched, never handed back again (no loop)."""
    from streams.core.media import Unmatched
    j = MediaJoiner(window_ms=40, pending_s=2.0, nat_fallback=True)
    j.on_binding(binding("n2", key="s1/10.0.0.5/10000", speaker="caller"))
    j.on_binding(binding("n2", key="s1/192.168.1.10/4000", speaker="callee"))
    pays = tone_payloads(50, 4)
    outs: list[Any] = []
    unmatched: list[Any] = []
    for k in range(10):  # 1 s of the PBX's RTP to the NAT's public address, 100 ms per record
        ent = synth_entry("203.0.113.5", 31234, list(range(5 * k, 5 * k + 5)), [160 * i for i in range(5 * k, 5 * k + 5)],
                          [T0 + 100_000 + 20_000 * i for i in range(5 * k, 5 * k + 5)], pays[5 * k:5 * k + 5],
                          src=("10.0.0.5", 10000))
        out = j.on_rtp_batch(batch([ent], T0 + 200_000 + 100_000 * k))
        unmatched += [o for o in out if isinstance(o, Unmatched)]
    j.on_binding(binding("n2", key="s1/10.0.0.5/10000", speaker="caller", until=T0 + 1_200_000))
    # the worker's clock runs on (other RTP); the pending window hands the packets back in pieces,
    # re-sent one record each, joined long after the close + grace
    for t in range(1, 60):
        out = j.expire(T0 + 1_200_000 + 100_000 * t)
        unmatched += [o for o in out if isinstance(o, Unmatched)]
        outs += [o for o in out if not isinstance(o, Unmatched)]
        for u in [o for o in out if isinstance(o, Unmatched)]:
            back = j.on_rtp_batch(batch([u.entry], T0 + 1_200_000 + 100_000 * t), by_source=True)
            assert not any(isinstance(o, Unmatched) for o in back)
            outs += back
    assert sum(u.entry["count"] for u in unmatched) == 50
    ended = [(e.speaker, e.stats["packets"]) for e in outs if isinstance(e, StreamEnded)]
    assert sorted(ended) == [("callee", 50), ("caller", 0)]  # one by-source stream holding every packet
    np.testing.assert_array_equal(audio([o for o in outs if isinstance(o, AudioChunk) and o.speaker == "callee"]),
                                  resample(ULAW_TABLE[np.frombuffer(b"".join(pays), dtype=np.uint8)], 8000, 16000))
    # a by-source entry that matches nothing: counted unmatched, not returned
    before = j.counters["unmatched_packets"]
    stray = dict(unmatched[0].entry, stream_key="s1/10.7.7.7/9")
    back = j.on_rtp_batch(batch([stray], T0 + 9_000_000), by_source=True)
    back += j.expire(T0 + 20_000_000)
    assert not any(isinstance(o, Unmatched) for o in back)
    assert j.counters["unmatched_packets"] == before + stray["count"]


def test_stream_of_an_already_closed_binding_ends_at_the_close_not_by_idle() -> None:
    # a backlog: the closing binding is applied before any of the stream's RTP is read
    j = MediaJoiner(window_ms=40, idle_s=30.0)
    open_b = binding()
    closed = dict(open_b, valid_until_us=T0 + 1_000_000)
    j.on_binding(closed)
    out = j.on_rtp_batch(batch([rtp(0, 10, T0 + 100_000)], T0 + 400_000))
    out += j.expire(T0 + 3_000_000)  # well before idle_s
    ended = [o for o in out if isinstance(o, StreamEnded)]
    assert len(ended) == 1 and ended[0].reason == "closed"
    assert ended[0].stats["packets"] == 10
