"""Live capture on a real interface: two network namespaces joined by veths and a bridge (a mirror-port
stand-in), a SIPp call with RTP between them, the edge capturing on the bridge port of namespace A with
``--interface`` (AF_PACKET, TPACKET_V3 ring). Every SIP message and RTP packet must arrive once.
Needs root; namespaces and links are removed in ``finally``."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.live]

REPO = Path(__file__).resolve().parents[3]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("sipp") is None:
        pytest.skip("needs root and sipp")
    tag = uuid.uuid4().hex[:4]
    a, b, br = f"ssa{tag}", f"ssb{tag}", f"ssbr{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"{a}0", "type", "veth", "peer", "name", f"{a}1")
        sh("ip", "link", "add", f"{b}0", "type", "veth", "peer", "name", f"{b}1")
        sh("ip", "link", "add", br, "type", "bridge")
        sh("ip", "link", "set", f"{a}1", "netns", a)
        sh("ip", "link", "set", f"{b}1", "netns", b)
        for side in (a, b):
            sh("ip", "link", "set", f"{side}0", "master", br)
            sh("ip", "link", "set", f"{side}0", "up")
        sh("ip", "link", "set", br, "up")
        for ns, ip in ((a, "10.98.0.1/24"), (b, "10.98.0.2/24")):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", ip, "dev", f"{ns}1")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{ns}1", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield a, b, f"{a}0"
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in out:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", br], capture_output=True)


def _sipp_call(a: str, b: str, workdir: Path) -> None:
    (workdir / "pcap").mkdir(exist_ok=True)
    for p in Path("/usr/share/sip-tester").glob("*.pcap"):
        shutil.copy(p, workdir / "pcap" / p.name)
    uas = subprocess.Popen(["ip", "netns", "exec", b, "sipp", "-sn", "uas", "-i", "10.98.0.2", "-p", "15060",
                            "-mp", "17060", "-m", "1", "-nostdin"], cwd=workdir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        subprocess.run(["ip", "netns", "exec", a, "sipp", "-sn", "uac_pcap", "10.98.0.2:15060", "-i", "10.98.0.1",
                        "-p", "15070", "-mp", "18060", "-m", "1", "-nostdin", "-timeout", "60"], cwd=workdir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90, check=True)
    finally:
        uas.kill()
        uas.wait()


def _start_edge(iface: str, extra: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "spanscribe", "edge", "--interface", iface, "--site", "lab", "--edge-id", "live",
           "--sip-ports", "15060,15070", "--log-interval-s", "1", *extra]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "capturing on" in log.read_text():
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"edge exited: {log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"edge did not start: {log.read_text()}")


def _stop(proc: subprocess.Popen, log: Path) -> None:
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()


def test_live_dry_run_with_privilege_drop(netns, tmp_path):
    a, b, iface = netns
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # written after dropping root
    log = tmp_path / "edge.log"
    edge = _start_edge(iface, ["--dry-run", "--summary-json", str(out / "s.json"), "--user", "nobody"], log)
    try:
        _sipp_call(a, b, tmp_path)
    finally:
        _stop(edge, log)
    s = json.loads((out / "s.json").read_text())
    assert "dropped privileges to nobody" in log.read_text()
    assert s["sip_messages"] == 6, s
    assert s["sip_methods"] == {"ACK": 1, "BYE": 1, "INVITE": 1} and s["sip_responses"] == {"180": 1, "200": 2}
    assert s["rtp_packets"] == 246 and len(s["rtp_streams"]) == 2
    assert {x["packets"] for x in s["rtp_streams"]} == {236, 10}
    assert s["kernel_drops"] == 0, (s["kernel_drops"], s["kernel_packets"], s["frames"], log.read_text()[-3000:])


@pytest.mark.integration
def test_live_into_kafka(netns, tmp_path, kafka_settings, consume):
    from schemas.codec import AvroCodec
    from schemas.rtp_columns import unpack_stream
    from spanscribe.partitioning import partition_for

    a, b, iface = netns
    log = tmp_path / "edge.log"
    prefix = kafka_settings["topic_prefix"]
    bs = kafka_settings["bootstrap_servers"]
    edge = _start_edge(iface, ["--bootstrap-servers", bs, "--topic-prefix", prefix,
                               "--summary-json", str(tmp_path / "s.json")], log)
    try:
        _sipp_call(a, b, tmp_path)
    finally:
        _stop(edge, log)
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["delivery_failed"] == 0 and s["kernel_drops"] == 0
    sip = consume(bs, f"{prefix}.sip", 6, timeout_s=60)
    codec = AvroCodec("SipMessage")
    recs = [codec.decode(m.value()) for m in sip]
    assert len(recs) == 6 and sorted(r["edge_seq"] for r in recs) == list(range(1, 7))
    for m, r in zip(sip, recs, strict=False):
        assert m.key() == f"lab/{r['call_id']}".encode() and m.partition() == partition_for(m.key(), 4)
    rtp = consume(bs, f"{prefix}.rtp", s["rtp_batches"], timeout_s=60)
    rcodec = AvroCodec("RtpBatch")
    seen: Counter = Counter()
    for m in rtp:
        assert m.key() == f"lab/live/{m.partition()}".encode()
        for e in rcodec.decode(m.value())["streams"]:
            assert partition_for(e["stream_key"].encode(), 4) == m.partition()
            assert e["stream_key"] == "lab/10.98.0.2/17060"
            for q in unpack_stream(e).seq.tolist():
                seen[(e["ssrc"], q)] += 1
    # Each RTP packet once; SIPp's RFC 4733 pcap sends its end-of-event packet 3 times with one sequence
    # number (RFC 4733 §2.5.1.4), which tshark reports as "lost -2" on that stream.
    assert sum(seen.values()) == 246
    assert sorted(Counter(seen.values()).items()) == [(1, 243), (3, 1)]


@pytest.mark.parametrize("use_ring,custom_bpf", [(True, False), (False, False), (True, True)])
def test_live_source_on_loopback_ring_and_recv_fallback(use_ring, custom_bpf):
    """Both capture modes see each loopback packet once (outgoing copies skipped), with kernel counters."""
    import socket as so
    import threading

    from edge_capture.decode import FrameDecoder
    from edge_capture.live import LiveSource

    if os.geteuid() != 0:
        pytest.skip("needs root")
    port = 40000 + os.getpid() % 20000
    seen: list[bytes] = []
    done = threading.Event()
    from edge_capture.live import compile_filter

    bpf = compile_filter(f"udp and dst port {port}", "lo") if custom_bpf else None
    src = LiveSource("lo", ring_mb=4, use_ring=use_ring, bpf=bpf, stop=done.is_set, idle_s=0.05)
    other = 0
    dec = FrameDecoder()

    def send() -> None:
        time.sleep(0.3)
        with so.socket(so.AF_INET, so.SOCK_DGRAM) as s:
            for i in range(200):
                s.sendto(b"ping%03d" % i, ("127.0.0.1", port))
        time.sleep(1.0)
        done.set()

    t = threading.Thread(target=send)
    t.start()
    try:
        for ts, lt, frame in src:
            dg = dec.decode(ts, lt, frame)
            if dg is not None and dg[0] == 17 and dg[4] == port:
                seen.append(bytes(dg[5]))
            else:
                other += 1
    finally:
        t.join()
        pk, drops, _ = src.read_stats()
        src.close()
    assert src.mode == ("ring" if use_ring else "recv")
    assert seen == [b"ping%03d" % i for i in range(200)]
    assert drops == 0 and pk >= 200
    if custom_bpf:
        assert other == 0  # the kernel filter let nothing else through


def test_embedded_default_filter_is_what_tcpdump_compiles():
    from edge_capture.live import DEFAULT_FILTER, DEFAULT_FILTER_EXPR, LiveCaptureError, compile_filter

    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root and tcpdump")
    assert compile_filter(DEFAULT_FILTER_EXPR, "lo") == DEFAULT_FILTER
    with pytest.raises(LiveCaptureError):
        compile_filter("not a filter (", "lo")
