#!/usr/bin/env python3
"""Derive tests/expected/protocols-tshark.json from TShark (never from spanscribe's own output).

Run from the repository root with the shared captures at ../shared/captures:
    python tests/expected/derive_protocols_tshark.py
Needs /usr/bin/tshark (checked with TShark 4.0.17).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures"
OUT = Path(__file__).with_name("protocols-tshark.json")

RTP_FILES = [
    "sip-rtp-g711.pcap",
    "rtp-g711a-only.pcap",
    "sip-over-tcp-call.pcap",
    "rtp-g729-loss.rtp",
    "sip-codec-change-reinvite.pcap",
    "rtp-dtmf-2833-digit-5.pcap",
]
RTCP_FILES = ["rtcp-compound-sll.pcap", "sip-over-tcp-call.pcap", "sip-call-android-g711u.pcap"]
DTMF_FILES = ["rtp-dtmf-2833-digit-5.pcap"]


def tshark(name: str, display_filter: str, fields: list[str]) -> list[list[str]]:
    cmd = ["tshark", "-n", "-o", "rtp.heuristic_rtp:TRUE", "-r", str(CAPTURES / name), "-Y", display_filter,
           "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return [line.split("\t") for line in res.stdout.splitlines() if line]


def main() -> None:
    out: dict[str, dict[str, object]] = {"rtp": {}, "rtcp": {}, "dtmf": {}}
    for name in RTP_FILES:
        rows = tshark(name, "rtp && !rtcp && !icmp", ["frame.number", "rtp.p_type", "rtp.seq", "rtp.timestamp",
                                                      "rtp.ssrc", "rtp.marker", "rtp.cc", "rtp.payload",
                                                      "rtp.padding.count"])
        frames = []
        for fr, pt, seq, ts, ssrc, marker, cc, payload, padcount in rows:
            if not pt:  # a frame tshark matched by conversation but did not decode as RTP
                continue
            frames.append({
                "frame": int(fr), "pt": int(pt), "seq": int(seq), "ts": int(ts), "ssrc": int(ssrc, 16),
                "marker": marker in ("1", "True"), "cc": int(cc),
                "payload_len": len(payload.replace(":", "")) // 2, "padding": int(padcount or 0),
            })
        # Columnar (one list per field) to keep the file small.
        out["rtp"][name] = {k: [f[k] for f in frames] for k in frames[0]} if frames else {}
    for name in RTCP_FILES:
        rows = tshark(name, "rtcp && !icmp", ["frame.number", "rtcp.pt", "rtcp.length"])
        out["rtcp"][name] = [
            {"frame": int(fr), "types": [int(x) for x in pt.split("|")],
             "length_bytes": [(int(x) + 1) * 4 for x in ln.split("|")]}
            for fr, pt, ln in rows
        ]
    for name in DTMF_FILES:
        rows = tshark(name, "rtpevent", ["frame.number", "rtpevent.event_id", "rtpevent.end_of_event",
                                         "rtpevent.volume", "rtpevent.duration"])
        out["dtmf"][name] = [
            {"frame": int(fr), "event": int(ev), "end": end in ("1", "True"), "volume": int(vol),
             "duration": int(dur)}
            for fr, ev, end, vol, dur in rows
        ]
    OUT.write_text(json.dumps(out, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
