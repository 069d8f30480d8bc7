"""Live raw-socket rate: RTP over a veth/bridge between two network namespaces, captured by
``spanscribe edge --interface`` (TPACKET_V3 ring, --dry-run), at several offered rates.

    sudo .venv/bin/python bench/edge_live_bench.py --rates 20000,50000,100000 --seconds 5 --streams 200

The sender (in namespace A) first sends an INVITE/200 pair per stream pair so the edge learns the
endpoints from SDP, then paces 172-byte G.711 RTP packets (a Python ``sendto`` loop, batched per ms).
Reports the rate the sender reached, what the edge forwarded, and the kernel's drop counter.
Namespaces and links are removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SENDER = r'''
import socket, struct, sys, time
rate, seconds, streams = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sip.bind(("10.97.0.1", 5060))
for i in range(streams):
    body = (f"v=0\r\no=- 1 1 IN IP4 10.97.0.2\r\ns=-\r\nc=IN IP4 10.97.0.2\r\nt=0 0\r\n"
            f"m=audio {20000 + 2 * i} RTP/AVP 8\r\n").encode()
    msg = (f"INVITE sip:b@10.97.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.97.0.1:5060;branch=z9hG4bK{i}\r\n"
           f"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: live-{i}\r\nCSeq: 1 INVITE\r\n"
           f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    sip.sendto(msg, ("10.97.0.2", 5060))
time.sleep(0.5)
payload = b"\xd5" * 160
hdr = struct.Struct("!BBHII")
dests = [("10.97.0.2", 20000 + 2 * i) for i in range(streams)]
sent = 0
t0 = time.perf_counter()
end = t0 + seconds
seq = 0
while True:
    now = time.perf_counter()
    if now >= end:
        break
    due = int((now - t0) * rate)
    while sent < due:
        d = dests[sent % streams]
        s.sendto(hdr.pack(0x80, 8, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, sent % streams) + payload, d)
        sent += 1
        if sent % streams == 0:
            seq += 1
el = time.perf_counter() - t0
print(sent, el)
'''


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="20000,50000,100000,200000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--replay-calls", type=int, default=0,
                    help="instead of the Python sender: tcpreplay a bench/edge_gen.py capture of this many calls")
    ap.add_argument("--replay-pps", default="topspeed", help="tcpreplay rate: 'topspeed' or packets/s list")
    ap.add_argument("--out")
    a = ap.parse_args()
    tag = uuid.uuid4().hex[:4]
    ns_a, ns_b, br = f"lba{tag}", f"lbb{tag}", f"lbbr{tag}"
    results = []
    work = Path(tempfile.mkdtemp(prefix="edge-live-"))
    try:
        sh("ip", "netns", "add", ns_a)
        sh("ip", "netns", "add", ns_b)
        for ns in (ns_a, ns_b):
            sh("ip", "link", "add", f"{ns}0", "type", "veth", "peer", "name", f"{ns}1")
            sh("ip", "link", "set", f"{ns}1", "netns", ns)
        sh("ip", "link", "add", br, "type", "bridge")
        for ns, ip in ((ns_a, "10.97.0.1/24"), (ns_b, "10.97.0.2/24")):
            sh("ip", "link", "set", f"{ns}0", "master", br)
            sh("ip", "link", "set", f"{ns}0", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", ip, "dev", f"{ns}1")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{ns}1", "up")
        sh("ip", "link", "set", br, "up")
        # B drops the RTP silently (no ICMP port unreachable flood)
        subprocess.run(["ip", "netns", "exec", ns_b, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=1000000"],
                       capture_output=True)
        if a.replay_calls:
            sys.path.insert(0, str(REPO / "bench"))
            from edge_gen import generate

            pcap = work / "replay.pcap"
            with open(pcap, "wb") as f:
                total = generate(f, a.replay_calls, a.seconds)
            for rate in a.replay_pps.split(","):
                summ = work / f"r-{rate}.json"
                log = work / f"edge-r-{rate}.log"
                with open(log, "w") as err:
                    edge = subprocess.Popen([sys.executable, "-m", "spanscribe", "edge", "--interface", f"{ns_a}0",
                                             "--dry-run", "--partitions", "4", "--summary-json", str(summ),
                                             "--site", "lb", "--log-interval-s", "60"], cwd=REPO, stderr=err,
                                            stdout=subprocess.DEVNULL)
                deadline = time.monotonic() + 30
                while "capturing on" not in log.read_text() and time.monotonic() < deadline:
                    time.sleep(0.1)
                speed = ["--topspeed"] if rate == "topspeed" else [f"--pps={rate}"]
                t0 = time.monotonic()
                rep = subprocess.run(["ip", "netns", "exec", ns_a, "tcpreplay", "-q", "-i", f"{ns_a}1", *speed,
                                      str(pcap)], capture_output=True, text=True, timeout=600)
                el = time.monotonic() - t0
                time.sleep(1.0)
                edge.send_signal(signal.SIGTERM)
                edge.wait(timeout=60)
                s = json.loads(summ.read_text())
                row = {"replay": rate, "calls": a.replay_calls, "packets": total, "replay_s": round(el, 2),
                       "replay_pps": round(total / el), "edge_sip": s["sip_messages"], "edge_rtp": s["rtp_packets"],
                       "kernel_drops": s.get("kernel_drops"), "kernel_packets": s.get("kernel_packets"),
                       "missing": total - s["rtp_packets"] - s["sip_messages"], "tcpreplay": " ".join(ln.strip() for ln in rep.stdout.splitlines() if "Rated" in ln or "Actual" in ln)}
                results.append(row)
                print(json.dumps(row), flush=True)
        for rate in ([] if a.replay_calls else [int(x) for x in a.rates.split(",")]):
            summ = work / f"s-{rate}.json"
            log = work / f"edge-{rate}.log"
            with open(log, "w") as err:
                edge = subprocess.Popen([sys.executable, "-m", "spanscribe", "edge", "--interface", f"{ns_a}0",
                                         "--dry-run", "--partitions", "4", "--summary-json", str(summ),
                                         "--site", "lb", "--log-interval-s", "60"], cwd=REPO, stderr=err,
                                        stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while "capturing on" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            out = subprocess.run(["ip", "netns", "exec", ns_a, sys.executable, "-c", SENDER, str(rate),
                                  str(a.seconds), str(a.streams)], capture_output=True, text=True, timeout=120,
                                 check=True).stdout.split()
            sent, el = int(out[0]), float(out[1])
            time.sleep(1.0)
            edge.send_signal(signal.SIGTERM)
            edge.wait(timeout=60)
            s = json.loads(summ.read_text())
            row = {"offered_pps": rate, "sent": sent, "sent_pps": round(sent / el), "edge_rtp": s["rtp_packets"],
                   "kernel_drops": s.get("kernel_drops"), "kernel_packets": s.get("kernel_packets"),
                   "lost": sent - s["rtp_packets"]}
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", br], capture_output=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    os.system(f"rm -rf {work}")  # noqa: S605 - our own temp dir


if __name__ == "__main__":
    main()
