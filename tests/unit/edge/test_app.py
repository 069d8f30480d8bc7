"""app.run end to end in dry-run mode: metrics, summary, no Faust/streams imports, SIGTERM on a stream."""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_capture.app import parse_ports, parse_range, run
from spanscribe.metrics import REGISTRY

DATA = Path(__file__).resolve().parents[2] / "data"
REPO = Path(__file__).resolve().parents[3]


def _args(**kw) -> argparse.Namespace:
    base = dict(pcap=str(DATA / "sipp-uac-pcap-g711a.pcap"), interface=None, speed=0.0, site="lab", edge_id="e",
                flush_ms=100, max_batch_packets=10000, rtp_mode="sdp", rtp_ports="1024-65535",
                sip_ports="15060,15070", rtp_grace_s=30.0, bpf_filter=None, ring_mb=64, user=None, metrics_port=0,
                log_interval_s=10.0, dry_run=True, summary_json=None, partitions=4, settings={"partitions": 4})
    base.update(kw)
    return argparse.Namespace(**base)


def test_ports_parsing():
    assert parse_ports("5060, 5061,6000-6002") == {5060, 5061, 6000, 6001, 6002}
    assert parse_range("10000-65535") == (10000, 65535)


def test_dry_run_updates_metrics_and_summary(tmp_path):
    def val(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (val("spanscribe_edge_frames_total"), val("spanscribe_edge_rtp_packets_total"),
              val("spanscribe_edge_sip_messages_total", method="INVITE", status=""))
    out = tmp_path / "s.json"
    assert run(_args(summary_json=str(out))) == 0
    s = json.loads(out.read_text())
    assert set(s) >= {"frames", "sip_messages", "sip_methods", "sip_responses", "calls", "rtp_packets",
                      "rtcp_packets", "rtp_streams", "errors"}
    assert {"src", "dst", "ssrc", "payload_type", "packets", "lost"} <= set(s["rtp_streams"][0])
    assert val("spanscribe_edge_frames_total") - before[0] == 252
    assert val("spanscribe_edge_rtp_packets_total") - before[1] == 246
    assert val("spanscribe_edge_sip_messages_total", method="INVITE", status="") - before[2] == 1


def test_bad_file_is_an_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"definitely not a capture")
    assert run(_args(pcap=str(bad))) == 1


def test_never_imports_faust_or_streams():
    code = ("import sys, edge_capture.app, edge_capture.live, edge_capture.producer, edge_capture.fastpath;"
            "bad = [m for m in sys.modules if m == 'faust' or m.startswith('faust.') or m == 'streams' "
            "or m.startswith('streams.')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_sigterm_on_a_stdin_stream_flushes_and_exits_0(tmp_path):
    """A capture arriving on stdin that never ends: SIGTERM stops it, the summary is written, exit 0."""
    out = tmp_path / "s.json"
    proc = subprocess.Popen([sys.executable, "-m", "spanscribe", "edge", "--pcap", "-", "--dry-run", "--site", "x",
                             "--sip-ports", "15060,15070", "--summary-json", str(out)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    data = (DATA / "sipp-uac-pcap-g711a.pcap").read_bytes()
    proc.stdin.write(data)  # the whole file, then keep the pipe open
    proc.stdin.flush()
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)  # the reader is blocked on the open pipe
    assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    proc.stdin.close()
    proc.stderr.close()
    s = json.loads(out.read_text())
    assert s["sip_messages"] == 6 and s["rtp_packets"] == 246


def test_speed_paces_at_capture_time(tmp_path):
    out = tmp_path / "s.json"
    t0 = time.monotonic()
    assert run(_args(speed=20.0, summary_json=str(out))) == 0  # ~9 s of capture at 20x: ~0.45 s
    elapsed = time.monotonic() - t0
    assert 0.35 < elapsed < 5.0
    assert json.loads(out.read_text())["rtp_packets"] == 246


def test_metrics_endpoint_serves_edge_counters():
    import socket as so
    import urllib.request

    with so.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "spanscribe", "edge", "--pcap", str(DATA / "sipp-uac-pcap-g711a.pcap"),
                             "--speed", "3", "--dry-run", "--sip-ports", "15060,15070", "--metrics-port", str(port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            if "spanscribe_edge_rtp_packets_total" in body and "spanscribe_edge_frames_total 0.0" not in body:
                break
        assert "spanscribe_edge_frames_total" in body
        assert 'spanscribe_edge_sip_messages_total{method="INVITE",status=""} 1.0' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
