"""DialogTracker: every dialog path with hand-built SIP, then real captures."""
from __future__ import annotations

import json
from typing import Any

import pytest
from streams_helpers import avro_roundtrip, sdp, sip_raw, sip_record, sip_records

from streams.core.dialog import BindingOut, CallEventOut, DialogConfig, DialogTracker, SpeakerMap

CID = "call-1@test"
A_IP, B_IP, B2_IP = "10.1.0.10", "10.2.0.20", "10.2.0.30"


class Flow:
    """Drives one call through a tracker; message helpers stamp increasing capture times."""

    def __init__(self, tracker: DialogTracker | None = None, call_id: str = CID) -> None:
        self.t = tracker or DialogTracker()
        self.cid = call_id
        self.ts = 1_700_000_000_000_000
        self.out: list[Any] = []

    def send(self, raw: bytes, dt_ms: int = 100) -> list[Any]:
        self.ts += dt_ms * 1000
        res = self.t.on_sip(sip_record(raw, self.ts))
        for o in res:  # every record must match its Avro schema
            name = "MediaBinding" if isinstance(o, BindingOut) else "CallEvent"
            assert avro_roundtrip(name, o.value) == o.value
            json.dumps(o.value)
        self.out.extend(res)
        return res

    def req(self, method: str, cseq: int, body: bytes = b"", to_tag: str | None = "tt1", from_caller: bool = True,
            **kw: Any) -> list[Any]:
        if from_caller:
            raw = sip_raw(f"{method} sip:bob@pbx.example SIP/2.0", self.cid, f"{cseq} {method}", "ft1", to_tag, body)
        else:  # in-dialog request from the callee: From/To swapped
            raw = sip_raw(f"{method} sip:alice@pbx.example SIP/2.0", self.cid, f"{cseq} {method}", to_tag or "tt1",
                          "ft1", body, from_uri="sip:bob@pbx.example", to_uri="sip:alice@pbx.example")
        return self.send(raw, **kw)

    def resp(self, code: int, cseq: int, method: str = "INVITE", body: bytes = b"", to_tag: str | None = "tt1",
             to_caller: bool = True, **kw: Any) -> list[Any]:
        reason = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 486: "Busy Here",
                  603: "Decline", 487: "Request Terminated", 488: "Not Acceptable Here", 407: "Proxy Auth"}.get(code, "X")
        if to_caller:
            raw = sip_raw(f"SIP/2.0 {code} {reason}", self.cid, f"{cseq} {method}", "ft1", to_tag, body)
        else:
            raw = sip_raw(f"SIP/2.0 {code} {reason}", self.cid, f"{cseq} {method}", to_tag or "tt1", "ft1", body,
                          from_uri="sip:bob@pbx.example", to_uri="sip:alice@pbx.example")
        return self.send(raw, **kw)

    def invite(self, body: bytes | None = None) -> list[Any]:
        return self.req("INVITE", 1, sdp(A_IP, 4000) if body is None else body, to_tag=None)

    def basic_call(self) -> None:
        self.invite()
        self.resp(100, 1, to_tag=None)
        self.resp(180, 1)
        self.resp(200, 1, body=sdp(B_IP, 6000))
        self.req("ACK", 1)


def bindings(outs: list[Any]) -> list[dict[str, Any]]:
    return [o.value for o in outs if isinstance(o, BindingOut)]


def events(outs: list[Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [o.value for o in outs if isinstance(o, CallEventOut) and (kind is None or o.value["kind"] == kind)]


def opened(outs: list[Any]) -> list[tuple[str, str, int]]:
    return [(b["stream_key"], b["speaker"], b["version"]) for b in bindings(outs) if b["valid_until_us"] is None]


def closed(outs: list[Any]) -> list[tuple[str, str, int]]:
    return [(b["stream_key"], b["speaker"], b["version"]) for b in bindings(outs) if b["valid_until_us"] is not None]


def test_basic_call_invite_200_ack_bye() -> None:
    f = Flow()
    o = f.invite()
    assert events(o, "call_started")[0]["caller"] == "sip:alice@pbx.example"
    # the caller's SDP announces where the CALLER receives: RTP there is the callee speaking
    assert opened(o) == [(f"s1/{A_IP}/4000", "callee", 1)]
    b = bindings(o)[0]
    assert b["call_start_us"] == f.ts and b["valid_from_us"] == f.ts and not b["encrypted"]
    assert [p["encoding"] for p in b["payload_map"]] == ["PCMU", "telephone-event"]
    assert o[0].key == f"s1/{A_IP}/4000".encode() or o[1].key == f"s1/{A_IP}/4000".encode()
    f.resp(100, 1, to_tag=None)
    f.resp(180, 1)
    o = f.resp(200, 1, body=sdp(B_IP, 6000))
    answer_ts = f.ts
    assert opened(o) == [(f"s1/{B_IP}/6000", "caller", 2)]
    assert f.req("ACK", 1) == []
    assert f.resp(200, 1, body=sdp(B_IP, 6000)) == []  # 200 retransmission: nothing new
    o = f.req("BYE", 2)
    bye_ts = f.ts
    assert sorted(closed(o)) == [(f"s1/{A_IP}/4000", "callee", 1), (f"s1/{B_IP}/6000", "caller", 2)]
    assert all(b["valid_until_us"] == bye_ts for b in bindings(o))
    ev = events(o, "call_ended")[0]
    assert ev["end_reason"] == "bye" and ev["answer_us"] == answer_ts and ev["speakers"] == ["callee", "caller"]
    assert o[-1].key == f"s1/{CID}".encode()
    assert f.resp(200, 2, method="BYE") == []
    assert f.req("BYE", 2) == []  # retransmitted BYE after the end


def test_early_media_183_then_200_same_sdp() -> None:
    f = Flow()
    f.invite()
    o = f.resp(183, 1, body=sdp(B_IP, 6000))
    assert opened(o) == [(f"s1/{B_IP}/6000", "caller", 2)]
    assert f.resp(200, 1, body=sdp(B_IP, 6000)) == []  # same SDP from the same To-tag: nothing changes
    assert f.t.snapshot(f"s1/{CID}")["state"] == "confirmed"  # type: ignore[index]


def test_forked_early_dialogs_by_to_tag() -> None:
    f = Flow()
    f.invite()
    a = f.resp(183, 1, body=sdp(B_IP, 6000), to_tag="forkA")
    b = f.resp(183, 1, body=sdp(B2_IP, 7000), to_tag="forkB")
    assert opened(a) == [(f"s1/{B_IP}/6000", "caller", 2)]
    assert opened(b) == [(f"s1/{B2_IP}/7000", "caller", 3)]
    o = f.resp(200, 1, body=sdp(B2_IP, 7000), to_tag="forkB")
    assert closed(o) == [(f"s1/{B_IP}/6000", "caller", 2)]  # the losing fork's early media ends
    assert opened(o) == []
    assert f.resp(183, 1, body=sdp("10.9.9.9", 8000), to_tag="forkC") == []  # late fork: ignored
    o = f.req("BYE", 2, to_tag="forkB")
    assert sorted(closed(o)) == [(f"s1/{A_IP}/4000", "callee", 1), (f"s1/{B2_IP}/7000", "caller", 3)]


def test_reinvite_hold_and_resume() -> None:
    f = Flow()
    f.basic_call()
    offer_ts = f.ts + 100_000
    o = f.req("INVITE", 2, sdp(A_IP, 4000, direction="sendonly"))
    assert o == []  # a re-offer counts when answered
    o = f.resp(200, 2, body=sdp(B_IP, 6000, direction="recvonly"))
    # the caller holds: it no longer receives -> its binding closes at the offer time; callee still receives
    assert closed(o) == [(f"s1/{A_IP}/4000", "callee", 1)]
    assert bindings(o)[0]["valid_until_us"] == offer_ts
    assert opened(o) == []
    f.req("ACK", 2)
    # inactive / c=0.0.0.0 (RFC 2543) from the callee side
    f.req("INVITE", 3, sdp("0.0.0.0", 4000))
    o = f.resp(200, 3, body=sdp(B_IP, 6000, direction="inactive"))
    assert closed(o) == [(f"s1/{B_IP}/6000", "caller", 2)]
    # resume
    f.req("INVITE", 4, sdp(A_IP, 4000))
    o = f.resp(200, 4, body=sdp(B_IP, 6000))
    assert sorted(opened(o)) == [(f"s1/{A_IP}/4000", "callee", 5), (f"s1/{B_IP}/6000", "caller", 6)]


def test_reinvite_codec_change_same_port() -> None:
    f = Flow()
    f.basic_call()
    f.req("INVITE", 2, sdp(A_IP, 4000, pts=(9,), rtpmaps=("9 G722/8000",)))
    o = f.resp(200, 2, body=sdp(B_IP, 6000, pts=(9,), rtpmaps=("9 G722/8000",)))
    outs = [(b["stream_key"], b["version"], b["valid_until_us"] is None) for b in bindings(o)]
    # new version opened BEFORE the old one closes on the same key (no gap on the media side)
    assert outs == [(f"s1/{A_IP}/4000", 3, True), (f"s1/{A_IP}/4000", 1, False),
                    (f"s1/{B_IP}/6000", 4, True), (f"s1/{B_IP}/6000", 2, False)]
    assert bindings(o)[0]["payload_map"][0]["encoding"] == "G722"


def test_reinvite_port_change_from_callee() -> None:
    f = Flow()
    f.basic_call()
    f.req("INVITE", 1, sdp(B_IP, 6100), from_caller=False)
    o = f.resp(200, 1, body=sdp(A_IP, 4000), to_caller=False)
    assert closed(o) == [(f"s1/{B_IP}/6000", "caller", 2)]
    assert opened(o) == [(f"s1/{B_IP}/6100", "caller", 3)]


def test_cseq_spaces_of_both_parties_do_not_mix() -> None:
    f = Flow()
    f.basic_call()
    assert f.req("INVITE", 1, sdp(B_IP, 6100), from_caller=False) == []  # callee re-offer, its CSeq 1
    assert f.resp(200, 1, body=sdp(B_IP, 6000)) == []  # a retransmitted 200 to the caller's INVITE 1
    o = f.resp(200, 1, body=sdp(A_IP, 4000), to_caller=False)  # the answer to the callee's re-offer
    assert closed(o) == [(f"s1/{B_IP}/6000", "caller", 2)] and opened(o) == [(f"s1/{B_IP}/6100", "caller", 3)]


def test_rejected_reinvite_keeps_media() -> None:
    f = Flow()
    f.basic_call()
    f.req("INVITE", 2, sdp(A_IP, 4100))
    assert f.resp(488, 2) == []
    o = f.req("BYE", 3)
    assert sorted(closed(o)) == [(f"s1/{A_IP}/4000", "callee", 1), (f"s1/{B_IP}/6000", "caller", 2)]


def test_update_with_sdp() -> None:
    f = Flow()
    f.invite()
    f.resp(183, 1, body=sdp(B_IP, 6000))
    assert f.req("UPDATE", 2, sdp(A_IP, 4002)) == []
    o = f.resp(200, 2, method="UPDATE", body=sdp(B_IP, 6000))
    assert closed(o) == [(f"s1/{A_IP}/4000", "callee", 1)]
    assert opened(o) == [(f"s1/{A_IP}/4002", "callee", 3)]


def test_late_offer_sdp_in_200_and_ack() -> None:
    f = Flow()
    o = f.invite(body=b"")
    assert bindings(o) == []
    o = f.resp(200, 1, body=sdp(B_IP, 6000))
    assert opened(o) == [(f"s1/{B_IP}/6000", "caller", 1)]
    o = f.req("ACK", 1, sdp(A_IP, 4000))
    assert opened(o) == [(f"s1/{A_IP}/4000", "callee", 2)]


def test_cancel() -> None:
    f = Flow()
    f.invite()
    f.resp(180, 1)
    o = f.req("CANCEL", 1, to_tag=None)
    assert closed(o) == [(f"s1/{A_IP}/4000", "callee", 1)]
    ev = events(o, "call_ended")[0]
    assert ev["end_reason"] == "cancel" and ev["answer_us"] is None
    assert f.resp(487, 1) == []


@pytest.mark.parametrize("code", [486, 603])
def test_final_error(code: int) -> None:
    f = Flow()
    f.invite()
    f.resp(183, 1, body=sdp(B_IP, 6000))
    o = f.resp(code, 1)
    assert sorted(closed(o)) == [(f"s1/{A_IP}/4000", "callee", 1), (f"s1/{B_IP}/6000", "caller", 2)]
    assert events(o, "call_ended")[0]["end_reason"] == "rejected"


def test_auth_challenge_is_not_the_end() -> None:
    f = Flow()
    f.invite()
    assert events(f.resp(407, 1)) == []
    f.req("ACK", 1)
    f.req("INVITE", 2, sdp(A_IP, 4000), to_tag=None)
    o = f.resp(200, 2, body=sdp(B_IP, 6000))
    assert opened(o) == [(f"s1/{B_IP}/6000", "caller", 2)]
    assert f.t.snapshot(f"s1/{CID}")["answer_us"] == f.ts  # type: ignore[index]


def test_timeout_without_bye_and_setup_timeout() -> None:
    t = DialogTracker(DialogConfig(timeout_s=60, setup_timeout_s=10, linger_s=5))
    f = Flow(t)
    f.basic_call()
    g = Flow(t, call_id="ringing@test")
    g.invite()
    assert t.expire(f.ts + 5_000_000) == []
    o = t.expire(g.ts + 11_000_000)
    assert events(o, "call_ended")[0]["call_id"] == "ringing@test"
    assert events(o, "call_ended")[0]["end_reason"] == "timeout"
    o = t.expire(f.ts + 61_000_000)
    ev = events(o, "call_ended")
    assert [e["call_id"] for e in ev] == [CID] and ev[0]["end_reason"] == "timeout"
    assert sorted(closed(o)) == [(f"s1/{A_IP}/4000", "callee", 1), (f"s1/{B_IP}/6000", "caller", 2)]
    assert all(b["valid_until_us"] == f.ts + 61_000_000 for b in bindings(o))
    t.expire(f.ts + 100_000_000)
    assert t.calls() == []  # forgotten after linger


def test_encrypted_media_note_and_roles() -> None:
    t = DialogTracker(DialogConfig(speaker_map=SpeakerMap.from_config(["10.2.0.0/16"], [])))
    f = Flow(t)
    o = f.invite(sdp(A_IP, 4000, proto="RTP/SAVP", extra=("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:xxxx",)))
    b = bindings(o)[0]
    assert b["encrypted"] and b["speaker"] == "callee"
    assert b["role"] is None  # the callee's media address is not known yet
    assert "callee media is encrypted" in events(o, "note")[0]["note"]
    o = f.resp(200, 1, body=sdp(B_IP, 6000))
    assert bindings(o)[0]["role"] == "customer"  # B (10.2/16) is the agent; this binding carries the caller
    t2 = DialogTracker(DialogConfig(speaker_map=SpeakerMap.from_config([], [r"alice"])))
    o = Flow(t2).invite()
    assert bindings(o)[0]["role"] == "customer" and bindings(o)[0]["speaker"] == "callee"


def test_snapshot_restore_resumes() -> None:
    f = Flow()
    f.basic_call()
    state = json.loads(json.dumps(f.t.snapshot(f"s1/{CID}")))
    t2 = DialogTracker()
    t2.restore(f"s1/{CID}", state)
    f.t = t2
    o = f.req("BYE", 2)
    assert len(closed(o)) == 2 and events(o, "call_ended")[0]["end_reason"] == "bye"


def test_bad_input_counted_and_unknown_ignored() -> None:
    t = DialogTracker()
    rec = sip_record(sip_raw("BYE sip:x SIP/2.0", "nope", "1 BYE", "a", "b"), 1)
    assert t.on_sip(rec) == []
    rec = dict(rec)
    rec["raw"] = b"\x00\x01garbage"
    assert t.on_sip(rec) == []
    assert t.counters["bad_input"] == 1 and t.counters["ignored"] == 1


def test_deterministic() -> None:
    def run() -> list[Any]:
        f = Flow()
        f.basic_call()
        f.req("INVITE", 2, sdp(A_IP, 4000, direction="sendonly"))
        f.resp(200, 2, body=sdp(B_IP, 6000, direction="recvonly"))
        f.req("BYE", 3)
        return f.out

    assert run() == run()


# -- real captures --------------------------------------------------------------------------------
def _run(path: Any) -> tuple[DialogTracker, list[Any]]:
    t = DialogTracker()
    outs: list[Any] = []
    for rec in sip_records(path):
        outs.extend(t.on_sip(rec))
    return t, outs


def _by_call(outs: list[Any]) -> dict[str, list[Any]]:
    d: dict[str, list[Any]] = {}
    for o in outs:
        cid = o.value["call_id"]
        d.setdefault(cid, []).append(o)
    return d


@pytest.mark.capture
def test_capture_sip_rtp_g711(capture: Any) -> None:
    t, outs = _run(capture("sip-rtp-g711.pcap"))
    calls = _by_call(outs)
    # tshark: two dialogs; 1-1966 ends with BYE, 1-1968 has no BYE in the capture
    assert sorted(calls) == ["1-1966@10.0.2.20", "1-1968@10.0.2.20"]
    assert [e["end_reason"] for e in events(calls["1-1966@10.0.2.20"], "call_ended")] == ["bye"]
    assert events(calls["1-1968@10.0.2.20"], "call_ended") == []
    last = max(o.value.get("valid_from_us") or o.value.get("ts_us") for o in outs)
    ended = events(t.expire(last + int(t.config.timeout_s * 1e6) + 1_000_000), "call_ended")
    assert [(e["call_id"], e["end_reason"]) for e in ended] == [("1-1968@10.0.2.20", "timeout")]
    for cid, o in calls.items():
        # tshark: the callee (FreeSWITCH, 10.0.2.15) answers a=sendonly and the only RTP stream of each
        # call goes to the caller's 10.0.2.20:6000, i.e. it carries the callee's voice
        assert {(b["stream_key"], b["speaker"]) for b in bindings(o)} == {("s1/10.0.2.20/6000", "callee")}, cid
    assert [b["payload_map"][0]["encoding"] for b in bindings(outs) if b["valid_until_us"] is None] == ["PCMU", "PCMA"]


@pytest.mark.capture
def test_capture_codec_change_reinvite(capture: Any) -> None:
    _, outs = _run(capture("sip-codec-change-reinvite.pcap"))
    encs = [b["payload_map"][0]["encoding"] for b in bindings(outs) if b["valid_until_us"] is None]
    assert "PCMU" in encs and "G722" in encs  # tshark: g711U then g722 (manifest codecs)
    assert max(b["version"] for b in bindings(outs)) >= 3
    assert events(outs, "call_ended")[0]["end_reason"] == "bye"


@pytest.mark.capture
def test_capture_early_media_183(capture: Any) -> None:
    _, outs = _run(capture("magicjack-early-media-183.pcap"))
    assert len(events(outs, "call_started")) == 1
    # INVITE -> 401 (not the end) -> INVITE cseq 2 -> 183 with SDP (early media) -> 200 same SDP -> BYE
    assert opened(outs) == [("s1/192.168.0.10/49154", "callee", 1), ("s1/216.234.64.16/54550", "caller", 2)]
    early = [b for b in bindings(outs) if b["speaker"] == "caller"][0]
    started = events(outs, "call_started")[0]["ts_us"]
    assert 6.95 < (early["valid_from_us"] - started) / 1e6 < 7.0  # at the 183 (166.030 s - 159.041 s), not the 200
    assert [e["end_reason"] for e in events(outs, "call_ended")] == ["bye"]


@pytest.mark.capture
def test_capture_reinvite_pcmu_to_opus(capture: Any) -> None:
    _, outs = _run(capture("sip-reinvite-pcmu-to-opus.pcap"))
    encs = {p["encoding"].upper() for b in bindings(outs) for p in b["payload_map"]}
    assert "PCMU" in encs and "OPUS" in encs


@pytest.mark.capture
def test_capture_android_g711u(capture: Any) -> None:
    _, outs = _run(capture("sip-call-android-g711u.pcap"))
    assert events(outs, "call_started")
    assert all(b["stream_key"].startswith("s1/") for b in bindings(outs))


@pytest.mark.capture
def test_capture_603_decline(capture: Any) -> None:
    _, outs = _run(capture("sip-dtmf-rfc2833-g711a.cap"))
    calls = _by_call(outs)
    assert [e["end_reason"] for e in events(calls["5514@192.168.105.110"], "call_ended")] == ["rejected"]
    # 25672: INVITE without SDP (late offer), 200 with the offer, ACK with the answer; seen on two legs
    late = calls["25672@192.168.105.110"]
    assert opened(late) == [("s1/192.168.105.110/4376", "caller", 1), ("s1/192.168.105.110/4374", "callee", 2)]
    assert events(late, "call_ended") == []


@pytest.mark.capture
def test_capture_488_codec_reject(capture: Any) -> None:
    _, outs = _run(capture("sip-488-codec-reject.pcapng"))
    ended = events(outs, "call_ended")
    assert ended and all(e["end_reason"] == "rejected" for e in ended)
    assert all(b["valid_until_us"] is not None for b in bindings(outs)[-1:])
