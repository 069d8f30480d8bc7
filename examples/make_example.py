#!/usr/bin/env python3
"""Make the bundled example capture(s): two-party G.711 PCMU calls with real synthetic speech.

    python examples/make_example.py                       # examples/call-g711.pcap + .expected.json
    python examples/make_example.py --calls 3 --out /tmp/calls3.pcap   # 3 overlapping calls (1.5 MB)

Pipeline, all from real tools so the capture is reproducible:
  espeak-ng (one voice per party) -> sox (repeatable mode, no dither) to 8 kHz 16-bit mono
  -> our own G.711 mu-law encoder (numpy) -> 20 ms RTP packets (160 bytes PCMU, PT 0)
  -> Ethernet/IPv4/UDP frames built with dpkt -> a classic pcap (microsecond timestamps).

Each call: INVITE (SDP offer, caller 10.0.0.10:40000 PCMU), 100 Trying, 180 Ringing, 200 OK (SDP
answer, callee 10.0.0.20:50000 PCMU), ACK, RTP in both directions (continuous 20 ms packets; the
silence between turns is real silence-coded PCMU, not a gap), then BYE and 200 OK: 7 SIP messages.

"caller" is the party whose voice is in the RTP sent by the INVITE sender (here the customer);
"callee" is the other party (the agent, who speaks first). The expected JSON lists, per speaker, the
exact text of each turn and when its speech starts and ends.

Determinism: fixed capture epoch, SSRCs, sequence/timestamp bases, tags, branches, Call-IDs, IP ids and
MACs; sox runs with -R (repeatable) and -D (no dither); the pcap writer is ours. Running the script twice
gives identical bytes (given the same espeak-ng and sox versions: 1.51 and 14.4.2 here).
"""
from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "call-g711.pcap"

SAMPLE_RATE_HZ = 8000
PTIME_MS = 20
SAMPLES_PER_PACKET = SAMPLE_RATE_HZ * PTIME_MS // 1000  # 160 bytes of PCMU per packet
CAPTURE_EPOCH_S = 1_764_000_000  # 2025-11-24T16:00:00Z, fixed so the capture never changes
SIP_PORT = 5060
PT_PCMU = 0
PT_TELEPHONE_EVENT = 101

VOICES = {"callee": "en-us+f3", "caller": "en-us"}  # agent: female US variant; customer: default US voice
# 130 wpm: at 160 wpm whisper-base misheard about twice as many words on the 8 kHz path (measured).
SPEED_WPM = 130

# Scripts: (speaker, text) turns, alternating. No digit sequences (nothing that looks like a card number).
SCRIPTS: list[list[tuple[str, str]]] = [
    [
        ("callee", "Thank you for calling Acme support, my name is Anna, how can I help you today?"),
        ("caller", "Hi, I would like to check the status of my order please, it was placed last Tuesday."),
        ("callee", "Of course. Your parcel is on its way and will arrive tomorrow morning."),
        ("caller", "Wonderful, thank you very much for your help."),
    ],
    [
        ("callee", "Good afternoon, you are speaking with Mark from the billing team."),
        ("caller", "Hello Mark, I think I was charged twice for my subscription this month."),
        ("callee", "I am sorry about that, I will refund the second payment right away."),
        ("caller", "Perfect, have a nice evening."),
    ],
    [
        ("callee", "Welcome to the travel desk, this is Laura speaking."),
        ("caller", "Good morning, I need to change my flight to London to next Friday."),
        ("callee", "No problem, there is a seat available in the morning, shall I book it?"),
        ("caller", "Yes please, the morning flight is fine."),
    ],
]

LEAD_SILENCE_S = 0.50  # media start -> first word
GAP_SILENCE_S = 1.00  # between turns: well above a 0.6-0.8 s endpointer
TAIL_SILENCE_S = 0.50  # last word -> end of media
TRIM_THRESHOLD = 200  # |sample| below this (16-bit) counts as silence when trimming espeak's padding


# --------------------------------------------------------------------------------------------- audio
def synthesize(text: str, voice: str, workdir: Path, rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """espeak-ng -> sox -> int16 mono at ``rate`` Hz (8 kHz for the capture), edge silence trimmed.

    Raises:
        RuntimeError: espeak-ng or sox is missing or failed.
    """
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH")
    wav = workdir / "tts.wav"
    raw = workdir / "tts.raw"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(SPEED_WPM), "-w", str(wav), text], check=True)
    # -R: repeatable (fixed seeds), -D: no dither; gain -n -3 normalises both voices to -3 dBFS peak.
    subprocess.run(
        ["sox", "-R", str(wav), "-D", "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1",
         "-L", "-r", str(rate), str(raw), "gain", "-n", "-3"],
        check=True,
    )
    pcm = np.fromfile(raw, dtype="<i2").astype(np.int16)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= TRIM_THRESHOLD)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    return pcm[loud[0] : loud[-1] + 1].copy()


def mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """ITU-T G.711 mu-law encode int16 samples -> uint8 codes (the classic Sun g711.c algorithm).

    The 16-bit sample is reduced to 14 bits as G.711 specifies, biased by 0x84, and the segment is found
    from the position of the highest set bit; the code is stored with its magnitude bits inverted.
    """
    x = pcm.astype(np.int32) >> 2  # 14-bit linear
    sign = np.where(x < 0, 0x00, 0x80)
    # Clip at 8158 (g711.c clips at 8159 and maps the overflow segment to code 0x7F, which is what
    # 8158 + bias = 0x1FFF yields too), bias 33 (=0x84>>2).
    mag = np.minimum(np.where(x < 0, -x, x), 8158) + 0x21
    seg = np.zeros_like(mag)
    for i, edge in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)):
        seg = np.where((mag > edge) & (seg == i), i + 1, seg)
    mant = (mag >> (seg + 1)) & 0x0F
    return ((sign | (seg << 4) | mant) ^ 0x7F).astype(np.uint8)  # positive: all bits inverted


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law decode uint8 codes -> int16 samples (inverse of ``mulaw_encode``)."""
    u = ~codes.astype(np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t = t << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


MULAW_SILENCE = int(mulaw_encode(np.zeros(1, dtype=np.int16))[0])  # 0xFF


# --------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Endpoint:
    ip: str
    sip_port: int
    rtp_port: int
    mac: bytes
    user: str


@dataclass
class CallPlan:
    index: int
    call_id: str
    caller: Endpoint
    callee: Endpoint
    script: list[tuple[str, str]]
    start_us: int  # INVITE time, microseconds after CAPTURE_EPOCH_S
    ssrc: dict[str, int]
    seq0: dict[str, int]
    ts0: dict[str, int]


def plan_call(index: int, start_us: int) -> CallPlan:
    """Deterministic addresses and identifiers for call ``index`` (0 = the bundled example)."""
    caller = Endpoint(f"10.0.0.{10 + index}", SIP_PORT, 40000 + 2 * index,
                      bytes([0x02, 0, 0, 0, 0, 0x10 + index]), f"customer{index + 1}" if index else "customer")
    callee = Endpoint(f"10.0.0.{20 + index}", SIP_PORT, 50000 + 2 * index,
                      bytes([0x02, 0, 0, 0, 0, 0x20 + index]), "support")
    return CallPlan(
        index=index,
        call_id=f"a84b4c76e66710-{index:02d}@10.0.0.{10 + index}",
        caller=caller,
        callee=callee,
        script=SCRIPTS[index % len(SCRIPTS)],
        start_us=start_us,
        ssrc={"caller": 0x1A2B3C00 + index, "callee": 0x5D6E7F00 + index},
        seq0={"caller": 1000 + 100 * index, "callee": 30000 + 100 * index},
        ts0={"caller": 160000 + 8000 * index, "callee": 800000 + 8000 * index},
    )


def sdp_body(ep: Endpoint, sess_id: int) -> bytes:
    lines = [
        "v=0",
        f"o={ep.user} {sess_id} {sess_id} IN IP4 {ep.ip}",
        "s=spanscribe example",
        f"c=IN IP4 {ep.ip}",
        "t=0 0",
        f"m=audio {ep.rtp_port} RTP/AVP {PT_PCMU} {PT_TELEPHONE_EVENT}",
        f"a=rtpmap:{PT_PCMU} PCMU/8000",
        f"a=rtpmap:{PT_TELEPHONE_EVENT} telephone-event/8000",
        f"a=fmtp:{PT_TELEPHONE_EVENT} 0-16",
        f"a=ptime:{PTIME_MS}",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def sip_messages(plan: CallPlan, t_ok_us: int, t_bye_us: int) -> list[tuple[int, str, bytes]]:
    """The 7 SIP messages as (time_us, direction 'fwd'|'rev', bytes); fwd = caller -> callee."""
    a, b = plan.caller, plan.callee
    i = plan.index
    from_tag, to_tag = f"1928301774-{i}", f"a6c85cf-{i}"
    br_inv, br_ack, br_bye = f"z9hG4bK776asdhds{i}", f"z9hG4bK776asdhdt{i}", f"z9hG4bK776asdhdu{i}"
    from_h = f'"Customer" <sip:{a.user}@{a.ip}>;tag={from_tag}'
    to_uri = f"<sip:{b.user}@{b.ip}>"
    contact_a, contact_b = f"<sip:{a.user}@{a.ip}:{a.sip_port}>", f"<sip:{b.user}@{b.ip}:{b.sip_port}>"
    ruri = f"sip:{b.user}@{b.ip}:{b.sip_port}"

    def msg(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
        hs = list(headers)
        if body:
            hs.append(("Content-Type", "application/sdp"))
        hs.append(("Content-Length", str(len(body))))
        return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n").encode() + body

    via_inv = f"SIP/2.0/UDP {a.ip}:{a.sip_port};branch={br_inv}"
    common_inv = [("Via", via_inv), ("Max-Forwards", "70")]
    invite = msg(f"INVITE {ruri} SIP/2.0", common_inv + [
        ("From", from_h), ("To", to_uri), ("Call-ID", plan.call_id), ("CSeq", "1 INVITE"),
        ("Contact", contact_a), ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
        ("User-Agent", "spanscribe-example/1.0")], sdp_body(a, 2890844526 + i))

    def resp(code: str, with_to_tag: bool, body: bytes = b"", contact: bool = False) -> bytes:
        hs = [("Via", via_inv), ("From", from_h),
              ("To", to_uri + (f";tag={to_tag}" if with_to_tag else "")),
              ("Call-ID", plan.call_id), ("CSeq", "1 INVITE")]
        if contact:
            hs.append(("Contact", contact_b))
        return msg(f"SIP/2.0 {code}", hs, body)

    trying = resp("100 Trying", False)
    ringing = resp("180 Ringing", True, contact=True)
    ok = resp("200 OK", True, sdp_body(b, 2890844730 + i), contact=True)
    to_full = f"{to_uri};tag={to_tag}"
    ack = msg(f"ACK {contact_b[1:-1]} SIP/2.0", [
        ("Via", f"SIP/2.0/UDP {a.ip}:{a.sip_port};branch={br_ack}"), ("Max-Forwards", "70"),
        ("From", from_h), ("To", to_full), ("Call-ID", plan.call_id), ("CSeq", "1 ACK")])
    bye = msg(f"BYE {contact_b[1:-1]} SIP/2.0", [
        ("Via", f"SIP/2.0/UDP {a.ip}:{a.sip_port};branch={br_bye}"), ("Max-Forwards", "70"),
        ("From", from_h), ("To", to_full), ("Call-ID", plan.call_id), ("CSeq", "2 BYE")])
    bye_ok = msg("SIP/2.0 200 OK", [
        ("Via", f"SIP/2.0/UDP {a.ip}:{a.sip_port};branch={br_bye}"), ("From", from_h), ("To", to_full),
        ("Call-ID", plan.call_id), ("CSeq", "2 BYE")])
    t0 = plan.start_us
    return [
        (t0, "fwd", invite),
        (t0 + 12_000, "rev", trying),
        (t0 + 48_000, "rev", ringing),
        (t_ok_us, "rev", ok),
        (t_ok_us + 9_000, "fwd", ack),
        (t_bye_us, "fwd", bye),
        (t_bye_us + 11_000, "rev", bye_ok),
    ]


# --------------------------------------------------------------------------------------------- frames
class FrameBuilder:
    """Ethernet/IPv4/UDP frames with deterministic IP identification numbers per sender."""

    def __init__(self) -> None:
        self._ip_id: dict[str, int] = {}

    def udp(self, src: Endpoint, dst: Endpoint, sport: int, dport: int, payload: bytes) -> bytes:
        ident = self._ip_id.get(src.ip, (sum(src.mac) * 7919) & 0xFFFF)
        self._ip_id[src.ip] = (ident + 1) & 0xFFFF
        u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        u.ulen = len(u)
        ip = dpkt.ip.IP(src=bytes(map(int, src.ip.split("."))), dst=bytes(map(int, dst.ip.split("."))),
                        p=dpkt.ip.IP_PROTO_UDP, ttl=64, id=ident, data=u)
        ip.len = len(ip)
        eth = dpkt.ethernet.Ethernet(src=src.mac, dst=dst.mac, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        return bytes(eth)


def rtp_packet(seq: int, ts: int, ssrc: int, marker: bool, payload: bytes) -> bytes:
    """RFC 3550 section 5.1 fixed header (V=2, no padding/extension/CSRC) + payload."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | PT_PCMU, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def write_pcap(path: Path, records: list[tuple[int, bytes]]) -> None:
    """Classic little-endian pcap, microsecond resolution, LINKTYPE_ETHERNET; records are (us, frame)."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_us, frame in records:
            sec, usec = divmod(CAPTURE_EPOCH_S * 1_000_000 + t_us, 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)


# --------------------------------------------------------------------------------------------- build
def build_call(plan: CallPlan, speech: dict[str, np.ndarray], fb: FrameBuilder
               ) -> tuple[list[tuple[int, int, bytes]], dict[str, object]]:
    """Records (time_us, tiebreak, frame) of one call and its expected-transcript document."""
    t_ok = plan.start_us + 1_500_000
    media0 = t_ok + 20_000  # both parties start sending just after the ACK
    # Lay the turns out on one 8 kHz timeline (sample 0 = media0); each speaker has its own channel.
    pos = int(LEAD_SILENCE_S * SAMPLE_RATE_HZ)
    turns: list[dict[str, object]] = []
    placed: list[tuple[str, int, np.ndarray]] = []
    for k, (speaker, text) in enumerate(plan.script):
        pcm = speech[f"{plan.index % len(SCRIPTS)}:{k}"]
        placed.append((speaker, pos, pcm))
        turns.append({"speaker": speaker, "text": text, "start_sample": pos, "end_sample": pos + len(pcm)})
        pos += len(pcm) + int(GAP_SILENCE_S * SAMPLE_RATE_HZ)
    pos -= int(GAP_SILENCE_S * SAMPLE_RATE_HZ)
    total = pos + int(TAIL_SILENCE_S * SAMPLE_RATE_HZ)
    n_packets = -(-total // SAMPLES_PER_PACKET)
    total = n_packets * SAMPLES_PER_PACKET
    channels = {s: np.zeros(total, dtype=np.int16) for s in ("caller", "callee")}
    for speaker, start, pcm in placed:
        channels[speaker][start : start + len(pcm)] = pcm

    records: list[tuple[int, int, bytes]] = []
    sender = {"caller": (plan.caller, plan.callee), "callee": (plan.callee, plan.caller)}
    offset_us = {"caller": 0, "callee": 7_000}  # the two directions interleave, never share a timestamp
    for speaker in ("caller", "callee"):
        codes = mulaw_encode(channels[speaker])
        src, dst = sender[speaker]
        for n in range(n_packets):
            payload = codes[n * SAMPLES_PER_PACKET : (n + 1) * SAMPLES_PER_PACKET].tobytes()
            pkt = rtp_packet(plan.seq0[speaker] + n, plan.ts0[speaker] + n * SAMPLES_PER_PACKET,
                             plan.ssrc[speaker], n == 0, payload)
            t = media0 + offset_us[speaker] + n * PTIME_MS * 1000
            records.append((t, 1, fb.udp(src, dst, src.rtp_port, dst.rtp_port, pkt)))
    media_end = media0 + n_packets * PTIME_MS * 1000
    t_bye = media_end + 40_000
    for t, direction, raw in sip_messages(plan, t_ok, t_bye):
        src, dst = (plan.caller, plan.callee) if direction == "fwd" else (plan.callee, plan.caller)
        records.append((t, 0, fb.udp(src, dst, src.sip_port, dst.sip_port, raw)))

    def sec(us: int) -> float:
        return round(us / 1e6, 6)

    def sample_time(s: int) -> float:
        return round((media0 - plan.start_us) / 1e6 + s / SAMPLE_RATE_HZ, 4)

    doc: dict[str, object] = {
        "call_id": plan.call_id,
        "invite_time": sec(plan.start_us),  # seconds after the capture epoch (capture_epoch in the file)
        "media_start": sec(media0 - plan.start_us),  # relative to the INVITE, like all times below
        "media_end": sec(media_end - plan.start_us),
        "bye_time": sec(t_bye - plan.start_us),
        "sip_messages": 7,
        "codec": "PCMU/8000",
        "speakers": {},
    }
    for speaker, (src, dst) in sender.items():
        mine = [t for t in turns if t["speaker"] == speaker]
        doc["speakers"][speaker] = {  # type: ignore[index]
            "voice": VOICES[speaker],
            "rtp": {"src": f"{src.ip}:{src.rtp_port}", "dst": f"{dst.ip}:{dst.rtp_port}",
                    "ssrc": f"0x{plan.ssrc[speaker]:08X}", "first_seq": plan.seq0[speaker],
                    "first_ts": plan.ts0[speaker], "packets": n_packets},
            "text": " ".join(str(t["text"]) for t in mine),
            "turns": [{"text": t["text"],
                       # seconds after the INVITE; "*_in_stream" = seconds after this stream's first packet
                       "start": sample_time(int(t["start_sample"])),  # type: ignore[arg-type]
                       "end": sample_time(int(t["end_sample"])),  # type: ignore[arg-type]
                       "start_in_stream": round(int(t["start_sample"]) / SAMPLE_RATE_HZ, 4),  # type: ignore[arg-type]
                       "end_in_stream": round(int(t["end_sample"]) / SAMPLE_RATE_HZ, 4)}  # type: ignore[arg-type]
                      for t in mine],
        }
    return records, doc


def make(out: Path, calls: int = 1, stagger_s: float = 4.0) -> dict[str, object]:
    """Write ``out`` (pcap) and ``<stem>.expected.json`` beside it; return the expected document."""
    speech: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="spanscribe-example-") as tmp:
        for s in sorted({i % len(SCRIPTS) for i in range(calls)}):
            for k, (speaker, text) in enumerate(SCRIPTS[s]):
                speech[f"{s}:{k}"] = synthesize(text, VOICES[speaker], Path(tmp))
    fb = FrameBuilder()
    records: list[tuple[int, int, bytes]] = []
    docs = []
    for i in range(calls):
        recs, doc = build_call(plan_call(i, int(i * stagger_s * 1e6)), speech, fb)
        records += recs
        docs.append(doc)
    # SIP before RTP at equal times; then stable by insertion order (sorted() is stable).
    records.sort(key=lambda r: (r[0], r[1]))
    write_pcap(out, [(t, frame) for t, _, frame in records])
    expected: dict[str, object] = {
        "description": "Synthetic two-party G.711 PCMU call(s) made by examples/make_example.py "
                       "(espeak-ng speech, sox 8 kHz, own mu-law encoder, dpkt frames).",
        "capture_epoch": CAPTURE_EPOCH_S,
        "times": "seconds; invite_time after capture_epoch, all other times after that call's INVITE",
        "packets": len(records),
        "calls": docs,
    }
    exp_path = out.with_name(out.name.removesuffix(".pcap") + ".expected.json")
    exp_path.write_text(json.dumps(expected, indent=2) + "\n")
    return expected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1, help="number of overlapping calls (default 1)")
    ap.add_argument("--stagger", type=float, default=4.0, help="seconds between call starts (default 4)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output pcap (default examples/call-g711.pcap, or examples/callsN-g711.pcap for N > 1)")
    args = ap.parse_args(argv)
    if args.calls < 1:
        ap.error("--calls must be >= 1")
    if args.out is None:  # never overwrite the bundled single call with a multi-call capture
        args.out = DEFAULT_OUT if args.calls == 1 else HERE / f"calls{args.calls}-g711.pcap"
    exp = make(args.out, args.calls, args.stagger)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {exp['packets']} packets, {args.calls} call(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
