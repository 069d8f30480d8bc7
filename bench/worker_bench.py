"""Central worker benchmark: how many concurrent calls one Faust worker core handles.

Pre-loads a real local broker with N concurrent G.711 calls (SIP records with SDP and 100 ms RtpBatch
records exactly as the edge makes them: one record per partition per interval), then starts the null
STT server (answers instantly, no model) and ONE worker, and measures how long the worker takes to
consume the backlog and how much CPU it used. Beside it, in the same process, a plain confluent-kafka
consumer loop reads and decodes the same rtp topic (the baseline: the cost of Kafka + Avro alone).

Figures printed: records/s, stream batches/s, packets/s, audio handled per worker CPU second
(= x real time per core for a backlog), concurrent calls per core in real time (N x D / cpu_s), and with
--realtime the capture-to-STT-send latency p50/p99 while the calls are produced at real time.

Reproduce:  .venv/bin/python bench/worker_bench.py --calls 500 --seconds 20
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.codec import AvroCodec  # noqa: E402
from schemas.rtp_columns import pack_stream, unpack_stream  # noqa: E402
from spanscribe.config import load, topic  # noqa: E402
from spanscribe.kafka.local import LocalKafka, free_port  # noqa: E402
from spanscribe.partitioning import partition_for  # noqa: E402
from spanscribe.topics import create_topics  # noqa: E402

SITE = "bench"
SIP_T = ("{method} sip:callee{i}@10.2.{a}.{b} SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.{a}.{b}:5060;branch=z9hG4bK{i}{m}\r\n"
         "From: <sip:caller{i}@10.1.{a}.{b}>;tag=f{i}\r\nTo: <sip:callee{i}@10.2.{a}.{b}>{totag}\r\n"
         "Call-ID: bench-{i}\r\nCSeq: {cseq} {cmethod}\r\nContent-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n{body}")
RESP_T = ("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.1.{a}.{b}:5060;branch=z9hG4bK{i}{m}\r\n"
          "From: <sip:caller{i}@10.1.{a}.{b}>;tag=f{i}\r\nTo: <sip:callee{i}@10.2.{a}.{b}>;tag=t{i}\r\n"
          "Call-ID: bench-{i}\r\nCSeq: {cseq} {cmethod}\r\nContent-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n{body}")
SDP_T = "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"


def ends(i: int) -> tuple[str, int, str, int]:
    a, b = (i // 250) % 250, i % 250 + 1
    return f"10.1.{a}.{b}", 20000 + 2 * (i % 5000), f"10.2.{a}.{b}", 30000 + 2 * (i % 5000)


def sip_record(i: int, kind: str, ts_us: int, seq: int) -> dict:
    caller_ip, caller_port, callee_ip, callee_port = ends(i)
    a, b = (i // 250) % 250, i % 250 + 1
    if kind == "INVITE":
        body = SDP_T.format(ip=caller_ip, port=caller_port)
        raw = SIP_T.format(method="INVITE", i=i, a=a, b=b, m="i", totag="", cseq=1, cmethod="INVITE", n=len(body), body=body)
    elif kind == "200":
        body = SDP_T.format(ip=callee_ip, port=callee_port)
        raw = RESP_T.format(i=i, a=a, b=b, m="i", cseq=1, cmethod="INVITE", n=len(body), body=body)
    elif kind == "ACK":
        raw = SIP_T.format(method="ACK", i=i, a=a, b=b, m="a", totag=f";tag=t{i}", cseq=1, cmethod="ACK", n=0, body="")
    elif kind == "BYE":
        raw = SIP_T.format(method="BYE", i=i, a=a, b=b, m="b", totag=f";tag=t{i}", cseq=2, cmethod="BYE", n=0, body="")
    else:
        raw = RESP_T.format(i=i, a=a, b=b, m="b", cseq=2, cmethod="BYE", n=0, body="")
    is_req = kind in ("INVITE", "ACK", "BYE")
    return {"site": SITE, "edge_id": "bench", "edge_seq": seq, "edge_start_us": 0, "capture_ts_us": ts_us,
            "transport": "udp", "src_ip": caller_ip, "src_port": 5060, "dst_ip": callee_ip, "dst_port": 5060,
            "raw": raw.encode(), "call_id": f"bench-{i}", "is_request": is_req, "method": kind if is_req else None,
            "status_code": None if is_req else 200, "cseq_num": 2 if kind in ("BYE", "200BYE") else 1,
            "cseq_method": "INVITE" if kind in ("INVITE", "200", "ACK") else "BYE",
            "from_tag": f"f{i}", "to_tag": None if kind == "INVITE" else f"t{i}", "sdp_media": []}


class Gen:
    """Yields (topic kind, partition or None, key, record) for N calls of D seconds starting at t0."""

    def __init__(self, n: int, seconds: float, partitions: int, t0_us: int, flush_ms: int = 100) -> None:
        self.n, self.seconds, self.partitions, self.t0 = n, seconds, partitions, t0_us
        self.flush_us = flush_ms * 1000
        self.per = max(1, flush_ms // 20)  # 20 ms packets per stream per interval
        rng = np.random.default_rng(7)
        self.payload = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(8)]
        self.streams = []  # (stream_key, src_ip, src_port, dst_ip, dst_port, ssrc, partition)
        for i in range(n):
            cip, cport, eip, eport = ends(i)
            for (sip_, sport, dip, dport, ssrc) in ((cip, cport, eip, eport, 2 * i + 1), (eip, eport, cip, cport, 2 * i + 2)):
                key = f"{SITE}/{dip}/{dport}"
                self.streams.append((key, sip_, sport, dip, dport, ssrc, partition_for(key.encode(), partitions)))
        self.intervals = int(seconds * 1e6 // self.flush_us)
        self.batch_seq = [0] * partitions

    def sip_start(self) -> list[tuple[bytes, dict]]:
        out = []
        for i in range(self.n):
            for j, kind in enumerate(("INVITE", "200", "ACK")):
                out.append((f"{SITE}/bench-{i}".encode(), sip_record(i, kind, self.t0 + j * 1000, 3 * i + j)))
        return out

    def sip_end(self, ts_us: int) -> list[tuple[bytes, dict]]:
        out = []
        for i in range(self.n):
            out.append((f"{SITE}/bench-{i}".encode(), sip_record(i, "BYE", ts_us, 10**9 + 2 * i)))
            out.append((f"{SITE}/bench-{i}".encode(), sip_record(i, "200BYE", ts_us + 1000, 10**9 + 2 * i + 1)))
        return out

    def rtp_interval(self, k: int, base_us: int) -> list[tuple[int, bytes, dict]]:
        """RtpBatch records of interval k (flush_ms / 20 packets of 20 ms per stream), one per partition."""
        per_part: dict[int, list[dict]] = {}
        m = self.per
        seq = [(k * m + j) & 0xFFFF for j in range(m)]
        ts = [(k * m + j) * 160 for j in range(m)]
        cap = [base_us + (k * m + j) * 20_000 for j in range(m)]
        pls = [self.payload[(k + j) % 8] for j in range(m)]
        for (key, sip_, sport, dip, dport, ssrc, part) in self.streams:
            per_part.setdefault(part, []).append(pack_stream(
                stream_key=key, src_ip=sip_, src_port=sport, dst_ip=dip, dst_port=dport, ssrc=ssrc, seq=seq,
                rtp_ts=ts, capture_us=cap, payload_type=[0] * m, marker=[k == 0 and j == 0 for j in range(m)],
                payloads=pls))
        out = []
        for part, entries in sorted(per_part.items()):
            rec = {"site": SITE, "edge_id": "bench", "edge_start_us": 0, "batch_seq": self.batch_seq[part],
                   "flush_ts_us": cap[-1] + 20_000, "streams": entries}
            self.batch_seq[part] += 1
            out.append((part, f"{SITE}/bench/{part}".encode(), rec))
        return out


def metric(port: int, name: str, labels: str = "") -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1.0
    pat = re.compile(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", re.M)
    m = pat.search(text)
    return float(m.group(1)) if m else 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def baseline_consumer(bootstrap: str, rtp_topic: str, expected: int) -> tuple[float, float]:
    """A plain confluent consume(1000) loop decoding every RtpBatch and unpacking every stream entry."""
    codec = AvroCodec("RtpBatch")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"base-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([rtp_topic])
    got = 0
    t = None
    cpu0 = time.process_time()
    while got < expected:
        for m in c.consume(1000, timeout=1.0):
            if m.error():
                continue
            if t is None:
                t = time.perf_counter()
                cpu0 = time.process_time()
            for e in codec.decode(m.value())["streams"]:
                unpack_stream(e)
            got += 1
    wall = time.perf_counter() - (t or time.perf_counter())
    c.close()
    return wall, time.process_time() - cpu0


def written(bootstrap: str, prefix: str) -> str:
    """Records per topic of this run (what the worker wrote besides what was pre-loaded)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    names = sorted(t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
                   if t.startswith(prefix))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex}"})
    out = []
    for name in names:
        parts = c.list_topics(name, timeout=10).topics[name].partitions
        total = sum(c.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in parts)
        out.append(f"{name.removeprefix(prefix + '.')}={total}")
    c.close()
    return " ".join(out)


def start_services(args: argparse.Namespace, bootstrap: str, prefix: str, tmp: Path,
                   procs: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], int]:
    stt_port, web = free_port(), free_port()
    procs.append(subprocess.Popen([sys.executable, "-m", "spanscribe", "stt-server", "--engine", "null",
                                   "--port", str(stt_port), "--max-sessions", str(4 * args.calls + 16)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    wlog = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "spanscribe", "worker", "--bootstrap-servers", bootstrap,
                               "--topic-prefix", prefix, "--partitions", str(args.partitions), "--app-id", prefix,
                               "--web-port", str(web), "--stt-url", f"ws://127.0.0.1:{stt_port}",
                               "--stt-max-sessions", str(4 * args.calls + 16), "--store", "memory",
                               "--data-dir", str(tmp / "w"), "--log-level", "warning"],
                              stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "SPANSCRIBE_STT__SAMPLE_RATE": str(args.stt_rate)})
    procs.append(worker)
    if getattr(args, "profile", None):
        procs.append(subprocess.Popen(["py-spy", "record", "--pid", str(worker.pid), "--format", "raw",
                                       "--rate", "200", "--nonblocking", "-o", args.profile],
                                      start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return worker, web


def histogram_buckets(port: int, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a Prometheus histogram, sorted."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sorted((float("inf") if le == "+Inf" else float(le), float(v)) for le, v in
                  re.findall(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M))


def quantiles(buckets: list[tuple[float, float]], qs: tuple[float, ...],
              since: list[tuple[float, float]] | None = None) -> tuple[list[float], int]:
    """Quantiles by linear interpolation in the buckets; ``since``: an earlier snapshot to subtract."""
    if since:
        before = dict(since)
        buckets = [(le, c - before.get(le, 0.0)) for le, c in buckets]
    total = buckets[-1][1] if buckets else 0
    out = []
    for q in qs:
        target, prev_le, prev_c = q * total, 0.0, 0.0
        for le, c in buckets:
            if c >= target:
                frac = 0.0 if c == prev_c else (target - prev_c) / (c - prev_c)
                out.append(prev_le + (le - prev_le) * frac if le != float("inf") else prev_le)
                break
            prev_le, prev_c = le, c
    return out, int(total)


def realtime(args: argparse.Namespace, bootstrap: str, settings: dict, prefix: str, tmp: Path,
             procs: list[subprocess.Popen[bytes]]) -> int:
    worker, web = start_services(args, bootstrap, prefix, tmp, procs)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{web}/readyz", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    t0_us = int(time.time() * 1e6)
    gen = Gen(args.calls, args.seconds, args.partitions, t0_us=t0_us, flush_ms=args.flush_ms)
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4",
                     "partitioner": "murmur2_random", "message.max.bytes": 8 << 20})
    sip_codec, rtp_codec = AvroCodec("SipMessage"), AvroCodec("RtpBatch")
    for key, rec in gen.sip_start():
        prod.produce(topic(settings, "sip"), key=key, value=sip_codec.encode(rec))
    prod.flush(30)
    base = t0_us + 100_000
    late = 0
    warm = None
    cpu0 = cpu_s(worker.pid)
    stt_cpu0 = cpu_s(procs[0].pid)
    for k in range(gen.intervals):
        due = (base + (k + 1) * gen.flush_us) / 1e6  # the interval's flush time
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        else:
            late += 1
        for part, key, rec in gen.rtp_interval(k, base):
            prod.produce(topic(settings, "rtp"), key=key, value=rtp_codec.encode(rec), partition=part)
        prod.poll(0)
        if k == int(3e6 // gen.flush_us):  # 3 s in: the STT sessions are open; the rest is the steady state
            warm = histogram_buckets(web, "spanscribe_capture_to_stt_seconds")
    prod.flush(30)
    time.sleep(2.0)
    used = cpu_s(worker.pid) - cpu0
    stt_used = cpu_s(procs[0].pid) - stt_cpu0
    hist = histogram_buckets(web, "spanscribe_capture_to_stt_seconds")
    (p50, p99), n = quantiles(hist, (0.5, 0.99))
    (s50, s99), sn = quantiles(hist, (0.5, 0.99), since=warm)
    print(f"real time: {args.calls} calls ({2 * args.calls} streams) for {args.seconds:.0f} s, "
          f"{late} of {gen.intervals} intervals produced late")
    print(f"  worker CPU {used / args.seconds * 100:.0f}% of one core; capture-to-STT-send over {n} batches: "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (+ up to {args.flush_ms} ms for a batch's oldest packet)")
    print(f"  after the first 3 s (sessions open): {sn} batches, p50 {s50 * 1000:.0f} ms, p99 {s99 * 1000:.0f} ms")
    waits = metric(web, "spanscribe_stt_backpressure_waits_total")
    sip_waits = metric(web, "spanscribe_rtp_signalling_waits_total", '{outcome="caught_up"}')
    print(f"  null STT server CPU {stt_used / args.seconds * 100:.0f}% of one core; STT backpressure waits "
          f"{waits:.0f}; RTP batches held for signalling {sip_waits:.0f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--realtime", action="store_true",
                    help="start the worker first, then produce the calls paced at real time (capture time = "
                         "wall time) and report capture-to-STT-send latency percentiles")
    ap.add_argument("--flush-ms", type=int, default=100,
                    help="the edge's flush interval the records are made with (default 100, the edge's default)")
    ap.add_argument("--stt-rate", type=int, default=16000,
                    help="sample rate sent to STT (16000 default; 8000 sends G.711's own rate: no resampling)")
    ap.add_argument("--profile", metavar="FILE",
                    help="sample the worker with py-spy (pip install py-spy) into FILE (collapsed stacks)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-"))
    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = LocalKafka(tmp / "kafka", port=free_port(), controller_port=free_port())
        bootstrap = broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        settings = load(environ={}, overrides={"bootstrap_servers": bootstrap, "topic_prefix": prefix,
                                                "partitions": args.partitions})
        create_topics(settings)
        if args.realtime:
            return realtime(args, bootstrap, settings, prefix, tmp, procs)
        gen = Gen(args.calls, args.seconds, args.partitions, t0_us=1_700_000_000_000_000, flush_ms=args.flush_ms)
        prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "partitioner": "murmur2_random", "queue.buffering.max.kbytes": 1 << 20,
                         "message.max.bytes": 8 << 20})
        sip_codec, rtp_codec = AvroCodec("SipMessage"), AvroCodec("RtpBatch")
        t = time.perf_counter()
        for key, rec in gen.sip_start():
            prod.produce(topic(settings, "sip"), key=key, value=sip_codec.encode(rec))
        n_rtp = 0
        base = gen.t0 + 100_000
        for k in range(gen.intervals):
            for part, key, rec in gen.rtp_interval(k, base):
                while True:
                    try:
                        prod.produce(topic(settings, "rtp"), key=key, value=rtp_codec.encode(rec), partition=part)
                        break
                    except BufferError:
                        prod.poll(0.1)
                n_rtp += 1
            prod.poll(0)
        for key, rec in gen.sip_end(base + int(args.seconds * 1e6) + 100_000):
            prod.produce(topic(settings, "sip"), key=key, value=sip_codec.encode(rec))
        prod.flush(120)
        packets = 2 * args.calls * gen.intervals * gen.per
        print(f"pre-loaded {args.calls} calls x {args.seconds:.0f} s: {n_rtp} RtpBatch records, "
              f"{2 * args.calls * gen.intervals} stream batches, {packets} packets in {time.perf_counter() - t:.1f}s")

        bw, bcpu = baseline_consumer(bootstrap, topic(settings, "rtp"), n_rtp)
        print(f"baseline confluent consume+decode+unpack: {n_rtp / bw:,.0f} records/s, "
              f"{packets / max(bcpu, 1e-9):,.0f} packets per CPU s")

        worker, web = start_services(args, bootstrap, prefix, tmp, procs)
        t_start = time.perf_counter()
        cpu_start = None
        t_first = None
        peak_rss = 0.0
        while True:
            media = metric(web, "spanscribe_worker_records_total", '{agent="media"}')
            done = metric(web, "spanscribe_calls_finished_total")
            if media > 0 and t_first is None:
                t_first = time.perf_counter()
            if cpu_start is None and media >= 0:
                cpu_start = cpu_s(worker.pid)
            peak_rss = max(peak_rss, rss_mb(worker.pid))
            if media >= n_rtp and done >= args.calls:
                break
            if worker.poll() is not None:
                print("worker died; log:", (tmp / "worker.log").read_text()[-2000:])
                return 1
            if time.perf_counter() - t_start > 1800:
                print(f"timeout: media records {media}/{n_rtp}, calls {done}/{args.calls}")
                return 1
            time.sleep(0.5)
        wall = time.perf_counter() - (t_first or t_start)
        used = cpu_s(worker.pid) - (cpu_start or 0.0)
        audio_s = 2 * args.calls * args.seconds
        unmatched = metric(web, "spanscribe_rtp_unmatched_total")
        print(f"worker: {n_rtp} records ({2 * args.calls * gen.intervals} stream batches, {packets} packets) "
              f"in {wall:.1f}s wall, {used:.1f}s CPU; peak RSS {peak_rss:.0f} MB; unmatched packets {unmatched:.0f}")
        print(f"  {n_rtp / wall:,.0f} records/s, {2 * args.calls * gen.intervals / wall:,.0f} stream batches/s, "
              f"{packets / used:,.0f} packets per CPU s")
        print(f"  backlog speed: {audio_s / used / 2:,.0f}x real time per core (call-seconds per CPU second)")
        print(f"  concurrent calls per worker core in real time: {args.calls * args.seconds / used:,.0f}")
        print(f"  records per topic: {written(bootstrap, prefix)}")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
