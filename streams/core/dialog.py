"""Signalling side: per Call-ID dialog state machine, SDP offer/answer -> MediaBindings and CallEvents.

One :class:`DialogTracker` per worker; per-call state lives in a ``MutableMapping[str, dict]`` keyed by
``"site/Call-ID"`` (a dict, or a Faust table), always JSON-able and reassigned after every change.

Semantics (ARCHITECTURE.md, "The join by SDP tuple"): the SDP a party sends announces where THAT party
receives. RTP sent to the caller's ``c=``/``m=`` tuple carries the callee's voice, so the binding of
the caller's tuple has speaker ``"callee"``, and vice versa.

Which SDP counts when:
- initial INVITE (offer), 18x/2xx responses, ACK and PRACK: applied at once (early media flows before
  any answer: RFC 3261 §13.2.1, RFC 3262);
- re-INVITE and UPDATE offers (RFC 3311): held until their 2xx, then applied from the offer's capture
  time; a 3xx-6xx answer drops them (a rejected re-offer keeps the old media);
- a party's audio section with port 0, ``c=0.0.0.0`` (RFC 2543 hold) or direction sendonly/inactive
  (RFC 3264 §5.1: it will not receive) closes that party's binding; sendrecv/recvonly (re)opens it;
- a changed port closes the old binding (``valid_until_us``) and opens a new one (``version`` + 1); a
  changed payload map or profile on the same port opens version + 1 then closes the old one, in this
  order, so the media side sees no gap on that stream.

Forked early dialogs: each To-tag of an 18x has its own callee bindings; the 2xx that answers picks one
To-tag and the others' bindings are closed. Timestamps are capture times (µs), never a clock.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from spanscribe.protocols import sdp as sdpmod
from spanscribe.protocols import sip as sipmod
from spanscribe.protocols.errors import MalformedInput

__all__ = ["BindingOut", "CallEventOut", "DialogConfig", "DialogTracker", "Output", "SpeakerMap"]

log = logging.getLogger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# -- outputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BindingOut:
    """A MediaBinding record to send to ``spanscribe.bindings`` under ``key`` (``b"site/ip/port"``)."""

    key: bytes
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallEventOut:
    """A CallEvent record to send to the call-events topic under ``key`` (``b"site/Call-ID"``)."""

    key: bytes
    value: dict[str, Any]


Output = BindingOut | CallEventOut


# -- configuration ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SpeakerMap:
    """Maps the call parties to ``agent``/``customer``.

    A party is the agent when the address it receives media on (its SDP ``c=``) is in
    ``agent_networks``, or the user part of its URI (From for the caller, To for the callee) fully
    matches one of ``agent_extensions``. The other party is then the customer. Unknown -> None.
    """

    agent_networks: tuple[IpNetwork, ...] = ()
    agent_extensions: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_config(cls, networks: Iterable[str] = (), extensions: Iterable[str] = ()) -> SpeakerMap:
        """Build from CIDR strings and regular expressions (raises ValueError on a bad one)."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks),
                   tuple(re.compile(e) for e in extensions))

    def is_agent(self, uri: str | None, media_ips: Iterable[str]) -> bool:
        for ip in media_ips:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if any(addr in n for n in self.agent_networks):
                return True
        user = _uri_user(uri)
        return user is not None and any(p.fullmatch(user) for p in self.agent_extensions)


def _uri_user(uri: str | None) -> str | None:
    if not uri:
        return None
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if "@" not in rest:
        return None
    return rest.split("@", 1)[0].split(";", 1)[0]


@dataclass(frozen=True, slots=True)
class DialogConfig:
    """Timeouts in seconds of capture time; ``linger_s`` keeps an ended call to absorb retransmissions."""

    timeout_s: float = 4 * 3600
    setup_timeout_s: float = 180
    linger_s: float = 64
    speaker_map: SpeakerMap | None = None


# -- the state machine ------------------------------------------------------------------------------
# Dialog-level events, derived from SIP messages (named for what happened; dispatch on type).
@dataclass(frozen=True, slots=True)
class CallOffered:
    """The initial INVITE (no To-tag)."""


@dataclass(frozen=True, slots=True)
class Provisional:
    """A 1xx to the initial INVITE."""


@dataclass(frozen=True, slots=True)
class Answered:
    """A 2xx to the initial INVITE."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A final 3xx-6xx (not 401/407) to the initial INVITE."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A CANCEL of the initial INVITE."""


@dataclass(frozen=True, slots=True)
class HungUp:
    """A BYE."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """No BYE within the timeout (driven by ``expire``)."""


DialogEvent = CallOffered | Provisional | Answered | Rejected | Cancelled | HungUp | TimedOut

CALLING, EARLY, CONFIRMED, TERMINATED = "calling", "early", "confirmed", "terminated"

#: {state: {event type: next state}}; an event missing from a state's row changes nothing.
TRANSITIONS: dict[str, dict[type[Any], str]] = {
    CALLING: {CallOffered: CALLING, Provisional: EARLY, Answered: CONFIRMED, Rejected: TERMINATED,
              Cancelled: TERMINATED, HungUp: TERMINATED, TimedOut: TERMINATED},
    EARLY: {CallOffered: EARLY, Provisional: EARLY, Answered: CONFIRMED, Rejected: TERMINATED,
            Cancelled: TERMINATED, HungUp: TERMINATED, TimedOut: TERMINATED},
    CONFIRMED: {Answered: CONFIRMED, HungUp: TERMINATED, TimedOut: TERMINATED},
    TERMINATED: {},
}

END_REASON: dict[type[Any], str] = {Rejected: "rejected", Cancelled: "cancel", HungUp: "bye", TimedOut: "timeout"}

_NULL_ADDRS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})


def _new_call(site: str, call_id: str, msg: sipmod.SipMessage, ts_us: int) -> dict[str, Any]:
    return {
        "site": site, "call_id": call_id, "state": CALLING, "caller": msg.from_uri, "callee": msg.to_uri,
        "caller_tag": msg.from_tag, "invite_cseq": msg.cseq_num, "start_us": ts_us, "answer_us": None,
        "end_us": None, "end_reason": None, "last_us": ts_us, "version": 0, "answered_tag": None,
        # open bindings: stream_key -> MediaBinding dict, with "owner" = "caller" | "callee:<tag>"
        "open": {}, "owners": {},
        "media_ips": {"caller": [], "callee": []},
        "speakers": [], "notes": [],
        "pending": {},  # "<cseq>/<method>/<requester>" -> {"party", "tag", "ts", "sdp": [media dicts]}
    }


def _media_dicts(body: bytes) -> list[dict[str, Any]]:
    """Audio sections of one SDP body as JSON-able dicts (raises MalformedInput)."""
    desc = sdpmod.parse(body)
    out = []
    for m in desc.audio():
        out.append({
            "ip": m.connection, "port": m.port, "proto": m.proto, "direction": m.direction,
            "encrypted": m.encrypted,
            "payload_map": [{"payload_type": pt, "encoding": m.rtpmap[pt].encoding,
                             "clock_rate": m.rtpmap[pt].clock_rate, "channels": m.rtpmap[pt].channels,
                             "fmtp": m.fmtp.get(pt)}
                            for pt in m.payload_types if pt in m.rtpmap],
        })
    return out


class DialogTracker:
    """Follows SIP dialogs and emits MediaBinding and CallEvent records.

    Args:
        config: timeouts and the speaker map.
        store: per-call state (``"site/Call-ID"`` -> JSON-able dict); a dict by default.
    """

    def __init__(self, config: DialogConfig | None = None,
                 store: MutableMapping[str, dict[str, Any]] | None = None) -> None:
        self.config = config or DialogConfig()
        self.store: MutableMapping[str, dict[str, Any]] = store if store is not None else {}
        self.counters: dict[str, int] = {"bad_input": 0, "ignored": 0}

    # -- public API ---------------------------------------------------------------------------------
    def on_sip(self, rec: dict[str, Any]) -> list[Output]:
        """Process one SipMessage Avro dict. Returns the records to send, in order.

        The raw bytes are re-parsed with the shared parser; a message that does not parse is counted
        (``counters["bad_input"]``) and yields nothing. Never raises on bad input.
        """
        try:
            msg = sipmod.parse(bytes(rec["raw"]))
        except MalformedInput:
            self.counters["bad_input"] += 1
            return []
        call_id = msg.call_id or rec.get("call_id") or ""
        if not call_id:
            self.counters["ignored"] += 1
            return []
        site = str(rec["site"])
        key = f"{site}/{call_id}"
        ts = int(rec["capture_ts_us"])
        call = self.store.get(key)
        out: list[Output] = []
        if call is None:
            if not (msg.is_request and msg.method == "INVITE" and not msg.to_tag):
                self.counters["ignored"] += 1
                return []
            call = _new_call(site, call_id, msg, ts)
            out.append(self._event(call, "call_started", ts))
            self._transition(call, CallOffered(), ts, out)
        else:
            call = _copy(call)
        if call["state"] == TERMINATED:
            self.store[key] = call  # retransmissions after the end change nothing
            return out
        call["last_us"] = max(int(call["last_us"]), ts)
        self._handle(call, msg, ts, out)
        self.store[key] = call
        return out

    def expire(self, now_us: int) -> list[Output]:
        """End calls past their timeout (end_reason "timeout"); forget ended calls after ``linger_s``."""
        out: list[Output] = []
        cfg = self.config
        for key in sorted(self.store.keys()):
            call = self.store[key]
            if call["state"] == TERMINATED:
                if now_us - int(call["end_us"]) > cfg.linger_s * 1e6:
                    del self.store[key]
                continue
            limit = cfg.timeout_s if call["state"] == CONFIRMED else cfg.setup_timeout_s
            since = int(call["last_us"]) if call["state"] == CONFIRMED else int(call["start_us"])
            if now_us - since > limit * 1e6:
                call = _copy(call)
                self._transition(call, TimedOut(), now_us, out)
                self.store[key] = call
        return out

    def snapshot(self, call_key: str) -> dict[str, Any] | None:
        """JSON-able state of one call (None if unknown)."""
        c = self.store.get(call_key)
        return _copy(c) if c is not None else None

    def restore(self, call_key: str, state: dict[str, Any]) -> None:
        """Put back a :meth:`snapshot`."""
        self.store[call_key] = _copy(state)

    def calls(self) -> list[str]:
        """Keys of the calls held."""
        return sorted(self.store.keys())

    # -- internals ----------------------------------------------------------------------------------
    def _handle(self, call: dict[str, Any], msg: sipmod.SipMessage, ts: int, out: list[Output]) -> None:
        caller_tag = call["caller_tag"]
        from_caller = (msg.from_tag == caller_tag) if caller_tag else (msg.from_uri == call["caller"])
        sender = "caller" if (msg.is_request == from_caller) else "callee"
        # the sending party's own tag identifies a forked early dialog of the callee
        # (callee requests carry it in From, responses to caller requests in To)
        tag = ((msg.from_tag if msg.is_request else msg.to_tag) or "") if sender == "callee" else ""
        sdps = self._sdps(msg)
        # caller and callee number their requests independently (RFC 3261 §12.2.1.1): a pending offer
        # is keyed by the sender of the request too (a response comes from the other party)
        requester = sender if msg.is_request else ("callee" if sender == "caller" else "caller")
        cseq_key = f"{msg.cseq_num}/{msg.cseq_method}/{requester}"
        initial = (msg.cseq_method == "INVITE" and msg.cseq_num == call["invite_cseq"] and from_caller)

        if msg.is_request:
            method = msg.method
            if method == "INVITE" and not msg.to_tag:
                # initial INVITE, a retransmission, or a new INVITE after a 401/407 challenge
                if msg.cseq_num is not None and (call["invite_cseq"] is None or msg.cseq_num > call["invite_cseq"]):
                    call["invite_cseq"] = msg.cseq_num
                if sdps is not None:
                    self._announce(call, "caller", "", sdps, ts, out)
            elif method in ("INVITE", "UPDATE"):
                if sdps is not None:
                    call["pending"][cseq_key] = {"party": sender, "tag": tag, "ts": ts, "sdp": sdps}
            elif method in ("ACK", "PRACK"):
                if sdps is not None:
                    self._announce(call, sender, tag, sdps, ts, out)
            elif method == "CANCEL":
                self._transition(call, Cancelled(), ts, out)
            elif method == "BYE":
                self._transition(call, HungUp(), ts, out)
            return

        code = msg.status_code or 0
        if code < 200:
            if initial and code > 100:
                self._transition(call, Provisional(), ts, out)
            if sdps is not None and code > 100:
                self._announce(call, sender, tag, sdps, ts, out)
            return
        if code < 300:
            offer = call["pending"].pop(cseq_key, None)
            if offer is not None:
                self._announce(call, offer["party"], offer["tag"], offer["sdp"], int(offer["ts"]), out)
            if initial:
                if call["answer_us"] is None:
                    call["answer_us"] = ts
                    call["answered_tag"] = tag
                self._transition(call, Answered(), ts, out)
                self._drop_other_forks(call, tag, ts, out)
            if sdps is not None and msg.cseq_method in ("INVITE", "UPDATE", "PRACK"):
                self._announce(call, sender, tag, sdps, ts, out)
            return
        # 3xx-6xx
        call["pending"].pop(cseq_key, None)
        if initial and code not in (401, 407) and call["state"] != CONFIRMED:
            self._transition(call, Rejected(), ts, out)

    def _sdps(self, msg: sipmod.SipMessage) -> list[dict[str, Any]] | None:
        bodies = msg.sdp_bodies()
        if not bodies:
            return None
        media: list[dict[str, Any]] = []
        for b in bodies:
            try:
                media.extend(_media_dicts(b))
            except MalformedInput:
                self.counters["bad_input"] += 1
                return None
        return media

    def _transition(self, call: dict[str, Any], ev: DialogEvent, ts: int, out: list[Output]) -> None:
        nxt = TRANSITIONS[call["state"]].get(type(ev))
        if nxt is None:
            return
        call["state"] = nxt
        if nxt == TERMINATED:
            call["end_us"] = ts
            call["end_reason"] = END_REASON[type(ev)]
            self._close_all(call, ts, out)
            out.append(self._event(call, "call_ended", ts))

    def _announce(self, call: dict[str, Any], party: str, tag: str, media: Sequence[dict[str, Any]], ts: int,
                  out: list[Output]) -> None:
        """A party (with its early-dialog tag) announced where it receives: reconcile its bindings."""
        if party == "callee" and call["answered_tag"] is not None and tag and tag != call["answered_tag"]:
            return  # a late 18x/2xx of a fork that lost
        owner = "caller" if party == "caller" else f"callee:{tag}"
        speaker = "callee" if party == "caller" else "caller"
        wanted: dict[str, dict[str, Any]] = {}
        for m in media:
            ip = m["ip"]
            if not ip or ip in _NULL_ADDRS or int(m["port"]) == 0 or m["direction"] in ("sendonly", "inactive"):
                continue
            ips = call["media_ips"][party]
            if ip not in ips:
                ips.append(ip)
            skey = f"{call['site']}/{ip}/{int(m['port'])}"
            wanted.setdefault(skey, m)
        current = {k: b for k, b in call["open"].items() if call["owners"].get(k) == owner}
        changed_open = [k for k, m in wanted.items()
                        if k not in current or current[k]["payload_map"] != m["payload_map"]
                        or current[k]["encrypted"] != bool(m["encrypted"])]
        to_close = [k for k in current if k not in wanted or k in changed_open]
        if not changed_open and not to_close:
            return
        call["version"] = int(call["version"]) + 1
        closing = {k: current[k] for k in to_close}
        for k in changed_open:
            m = wanted[k]
            b = {
                "stream_key": k, "site": call["site"], "call_id": call["call_id"], "speaker": speaker,
                "role": self._role(call, speaker), "call_start_us": int(call["start_us"]),
                "valid_from_us": ts, "valid_until_us": None, "version": int(call["version"]),
                "encrypted": bool(m["encrypted"]), "payload_map": [dict(p) for p in m["payload_map"]],
            }
            # the same key owned by another party/fork of this call: that one ends now
            other = call["open"].get(k)
            if other is not None and k not in closing:
                closing[k] = other
            call["open"][k] = b
            call["owners"][k] = owner
            if speaker not in call["speakers"]:
                call["speakers"].append(speaker)
            out.append(BindingOut(k.encode("utf-8"), dict(b)))
            if b["encrypted"]:
                note = f"{speaker} media is encrypted ({m['proto']}): not transcribed"
                if note not in call["notes"]:
                    call["notes"].append(note)
                    out.append(self._event(call, "note", ts, note=note))
        for k, old in closing.items():
            closed = dict(old)
            closed["valid_until_us"] = ts
            out.append(BindingOut(k.encode("utf-8"), closed))
            if k not in changed_open:
                call["open"].pop(k, None)
                call["owners"].pop(k, None)

    def _drop_other_forks(self, call: dict[str, Any], tag: str, ts: int, out: list[Output]) -> None:
        for k in sorted(call["open"]):
            owner = call["owners"].get(k, "")
            if owner.startswith("callee:") and owner != f"callee:{tag}":
                closed = dict(call["open"].pop(k))
                call["owners"].pop(k, None)
                closed["valid_until_us"] = ts
                out.append(BindingOut(k.encode("utf-8"), closed))

    def _close_all(self, call: dict[str, Any], ts: int, out: list[Output]) -> None:
        for k in sorted(call["open"]):
            closed = dict(call["open"][k])
            closed["valid_until_us"] = ts
            out.append(BindingOut(k.encode("utf-8"), closed))
        call["open"] = {}
        call["owners"] = {}
        call["pending"] = {}

    def _role(self, call: dict[str, Any], speaker: str) -> str | None:
        sm = self.config.speaker_map
        if sm is None:
            return None
        caller_agent = sm.is_agent(call["caller"], call["media_ips"]["caller"])
        callee_agent = sm.is_agent(call["callee"], call["media_ips"]["callee"])
        if caller_agent == callee_agent:
            return None  # neither, or both: unknown
        agent = "caller" if caller_agent else "callee"
        return "agent" if speaker == agent else "customer"

    def _event(self, call: dict[str, Any], kind: str, ts: int, note: str | None = None) -> CallEventOut:
        ended = kind == "call_ended"
        value: dict[str, Any] = {
            "site": call["site"], "call_id": call["call_id"], "kind": kind, "ts_us": ts,
            "caller": call["caller"] if kind in ("call_started", "call_ended") else None,
            "callee": call["callee"] if kind in ("call_started", "call_ended") else None,
            "start_us": int(call["start_us"]) if kind in ("call_started", "call_ended") else None,
            "answer_us": call["answer_us"] if ended else None,
            "end_reason": call["end_reason"] if ended else None,
            "speakers": sorted(call["speakers"]) if ended else [],
            "stream": None, "note": note,
        }
        return CallEventOut(f"{call['site']}/{call['call_id']}".encode(), value)


def _copy(v: Any) -> Any:
    """Deep copy of JSON-like data (cheaper than copy.deepcopy)."""
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v

