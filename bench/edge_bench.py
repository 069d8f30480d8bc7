"""Edge capturer benchmark: N concurrent 20 ms G.711 calls, dry run vs into Kafka vs tshark.

    .venv/bin/python bench/edge_bench.py --calls 500,2000,3000 --seconds 10 [--kafka] [--tshark] [--live]

For each N a capture is generated with bench/edge_gen.py (SIP INVITE/200/ACK + RTP both ways + BYE),
then ``spanscribe edge --pcap`` runs in a child process; CPU time (user+sys of that child, from
``os.wait4``) gives packets/s per core, which is what matters on a loaded 2-core machine, and
``ru_maxrss`` its peak RSS. ``--kafka`` starts a local KRaft broker (spanscribe.kafka.local), creates the
topics (4 partitions) and produces into it; the broker's own CPU is not counted. ``--tshark`` times
``tshark -T fields`` extracting SIP and RTP fields from the same file (its CPU per packet, the ratio is
ours / tshark's). ``--live`` sends RTP over a veth pair between two namespaces with a sendmmsg sender and
captures with ``--interface`` (reports the rate reached and kernel drops).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd``; returns wall seconds, cpu seconds (user+sys) and max RSS (MiB) of the child."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stderr is not None
    err_lines = []
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    err_lines.append(proc.stderr.read().decode(errors="replace"))
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}): {''.join(err_lines)[-2000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024}


def edge_cmd(pcap: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "spanscribe", "edge", "--pcap", str(pcap), "--site", "bench", "--edge-id", "b1",
            "--log-interval-s", "60", *extra]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="500,2000,3000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--kafka", action="store_true")
    ap.add_argument("--tshark", action="store_true")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    from edge_gen import generate

    work = Path(a.workdir or tempfile.mkdtemp(prefix="edge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = None
    settings_env = dict(os.environ)
    results = []
    try:
        if a.kafka:
            from spanscribe.kafka.local import LocalKafka, free_port

            port = free_port()
            broker = LocalKafka(work / "kafka", port=port, controller_port=free_port())
            broker.start(timeout_s=120)
            settings_env["SPANSCRIBE_BOOTSTRAP_SERVERS"] = broker.bootstrap
        # Process start-up (imports of numpy, fastavro, confluent-kafka...) on a 6-message capture, to
        # report the steady per-packet rate as well as the whole-run rate.
        tiny = REPO / "tests" / "data" / "sipp-uac-pcap-g711a.pcap"
        startup = min(run_child(edge_cmd(tiny, ["--dry-run", "--partitions", "4"]))["cpu_s"] for _ in range(3))
        print(json.dumps({"startup_cpu_s": round(startup, 3)}), flush=True)
        for n in [int(x) for x in a.calls.split(",")]:
            pcap = work / f"calls-{n}.pcap"
            with open(pcap, "wb") as f:
                packets = generate(f, n, a.seconds)
            row: dict[str, object] = {"calls": n, "packets": packets, "file_mb": round(pcap.stat().st_size / 2**20, 1)}
            summ = work / f"dry-{n}.json"
            r = run_child(edge_cmd(pcap, ["--dry-run", "--partitions", "4", "--summary-json", str(summ)]))
            s = json.loads(summ.read_text())
            assert s["rtp_packets"] + s["sip_messages"] == packets, (s["rtp_packets"], s["sip_messages"], packets)
            row["dry_run_pps_per_core"] = round(packets / r["cpu_s"])
            row["dry_run_pps_per_core_steady"] = round(packets / max(1e-9, r["cpu_s"] - startup))
            row["dry_run_pps_wall"] = round(packets / r["wall_s"])
            row["dry_run_rss_mib"] = round(r["rss_mib"], 1)
            if broker is not None:
                from spanscribe.config import load
                from spanscribe.topics import create_topics

                prefix = f"bench-{uuid.uuid4().hex[:8]}"
                create_topics(load(environ={}, overrides={"bootstrap_servers": broker.bootstrap,
                                                          "topic_prefix": prefix, "partitions": 4}))
                summ = work / f"kafka-{n}.json"
                r = run_child(edge_cmd(pcap, ["--bootstrap-servers", broker.bootstrap, "--topic-prefix", prefix,
                                              "--summary-json", str(summ)]), env=settings_env)
                s = json.loads(summ.read_text())
                assert s["delivery_failed"] == 0
                row["kafka_pps_per_core"] = round(packets / r["cpu_s"])
                row["kafka_pps_per_core_steady"] = round(packets / max(1e-9, r["cpu_s"] - startup))
                row["kafka_pps_wall"] = round(packets / r["wall_s"])
                row["kafka_rss_mib"] = round(r["rss_mib"], 1)
                row["kafka_records"] = s["delivered"]
            if a.tshark:
                r = run_child(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.time_epoch",
                               "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
                               "-e", "sip.Method", "-e", "sip.Call-ID", "-e", "rtp.ssrc", "-e", "rtp.seq",
                               "-e", "rtp.timestamp", "-e", "rtp.p_type"])
                row["tshark_pps_per_core"] = round(packets / r["cpu_s"])
                row["ratio_vs_tshark"] = round(row["dry_run_pps_per_core"] / row["tshark_pps_per_core"], 1)  # type: ignore[operator]
            results.append(row)
            print(json.dumps(row), flush=True)
            pcap.unlink()
    finally:
        if broker is not None:
            broker.stop()
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
