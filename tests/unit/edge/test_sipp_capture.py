"""A real SIPp call (tests/data/make_sipp_call.sh) through the edge's dry run, against tshark run here."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_capture.app import run

DATA = Path(__file__).resolve().parents[2] / "data"
PCAP = DATA / "sipp-uac-pcap-g711a.pcap"


def tshark_stats(path: Path, sip_ports: list[int]) -> dict:
    cmd = ["tshark", "-n", "-r", str(path), "-q", "-z", "sip,stat", "-z", "rtp,streams"]
    for p in sip_ports:
        cmd += ["-d", f"udp.port=={p},sip"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    sip = int(re.search(r"Number of SIP messages: (\d+)", out).group(1))
    methods = {m: int(n) for m, n in re.findall(r"^\s+([A-Z]+)\s+:\s+(\d+) Packets", out, re.M)}
    statuses = {s: int(n) for s, n in re.findall(r"^\s+SIP (\d{3}) .*?:\s+(\d+) Packets", out, re.M)}
    streams = {}
    for m in re.finditer(r"^\s+[\d.]+\s+[\d.]+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+0x([0-9A-Fa-f]+)\s+\S+\s+(\d+)\s", out, re.M):
        streams[(f"{m.group(1)}:{m.group(2)}", f"{m.group(3)}:{m.group(4)}", int(m.group(5), 16))] = int(m.group(6))
    return {"sip": sip, "methods": methods, "statuses": statuses, "streams": streams}


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_sipp_call_dry_run_agrees_with_tshark(tmp_path):
    out = tmp_path / "s.json"
    args = argparse.Namespace(pcap=str(PCAP), interface=None, speed=0.0, site="lab", edge_id="e", flush_ms=100,
                              max_batch_packets=10000, rtp_mode="sdp", rtp_ports="1024-65535",
                              sip_ports="15060,15070", rtp_grace_s=30.0, bpf_filter=None, ring_mb=64, user=None,
                              metrics_port=0, log_interval_s=10.0, dry_run=True, summary_json=str(out),
                              partitions=4, settings={"partitions": 4})
    assert run(args) == 0
    ours = json.loads(out.read_text())
    ts = tshark_stats(PCAP, [15060, 15070])
    assert ts["sip"] == 6 and ours["sip_messages"] == ts["sip"]
    assert ours["sip_methods"] == ts["methods"]
    assert {k: v for k, v in ours["sip_responses"].items()} == ts["statuses"]
    mine = {(s["src"], s["dst"], s["ssrc"]): s["packets"] for s in ours["rtp_streams"]}
    assert mine == ts["streams"]
    assert ours["rtp_packets"] == sum(ts["streams"].values()) == 246
    assert ours["calls"] == 1
