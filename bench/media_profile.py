"""Profile of the media join on worker-shaped input: DialogTracker + MediaJoiner fed by worker_bench's Gen.

    .venv/bin/python bench/media_profile.py [--calls 200] [--seconds 5] [--partitions 4] [--top 25] [--no-profile]

``bench/worker_bench.py``'s ``Gen`` builds the SIP records (INVITE/200/ACK with SDP, BYE) and the
RtpBatch records exactly as the edge does (one record per partition per 100 ms, 5 packets per stream).
The SIP records go through ``DialogTracker``; its MediaBindings and the RtpBatch records go through one
``MediaJoiner`` per partition, as in the worker (no broker, no Faust, no STT). Prints the CPU time per
stream batch (``time.process_time``) and, unless ``--no-profile``, the cProfile top functions by
internal time.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from worker_bench import Gen  # noqa: E402

from spanscribe.partitioning import partition_for  # noqa: E402
from streams.core import DialogTracker, MediaJoiner  # noqa: E402
from streams.core.dialog import BindingOut  # noqa: E402
from streams.core.media import AudioChunk  # noqa: E402


def build(calls: int, seconds: float, partitions: int) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]],
                                                                   list[dict[str, Any]]]:
    gen = Gen(calls, seconds, partitions, t0_us=1_700_000_000_000_000)
    base = gen.t0 + 100_000
    rtp = [(part, rec) for k in range(gen.intervals) for part, _key, rec in gen.rtp_interval(k, base)]
    return ([rec for _k, rec in gen.sip_start()], rtp,
            [rec for _k, rec in gen.sip_end(base + int(seconds * 1e6) + 100_000)])


def run(sip: list[dict[str, Any]], rtp: list[tuple[int, dict[str, Any]]], sip_end: list[dict[str, Any]],
        partitions: int) -> tuple[float, int, int]:
    tracker = DialogTracker()
    joiners = {p: MediaJoiner(stt_rate=int(os.environ.get("STT_RATE", "16000"))) for p in range(partitions)}

    def bindings(recs: list[dict[str, Any]]) -> None:
        for rec in recs:
            for o in tracker.on_sip(rec):
                if isinstance(o, BindingOut):
                    key = str(o.value["stream_key"])
                    joiners[partition_for(key.encode(), partitions)].on_binding(o.value)

    bindings(sip)
    samples = chunks = 0
    t = time.process_time()
    for part, rec in rtp:
        for o in joiners[part].on_rtp_batch(rec):
            if isinstance(o, AudioChunk):
                samples += o.pcm.shape[0]
                chunks += 1
    cpu = time.process_time() - t
    bindings(sip_end)
    return cpu, samples, chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-profile", action="store_true")
    a = ap.parse_args()
    sip, rtp, sip_end = build(a.calls, a.seconds, a.partitions)
    batches = sum(len(r["streams"]) for _p, r in rtp)
    packets = sum(e["count"] for _p, r in rtp for e in r["streams"])
    cpu, samples, chunks = run(sip, rtp, sip_end, a.partitions)
    print(f"{a.calls} calls x {a.seconds:g} s, {a.partitions} partitions: {len(rtp)} records, {batches} stream "
          f"batches, {packets} packets, {chunks} AudioChunks ({samples / 16000:.0f} audio s)")
    print(f"MediaJoiner.on_rtp_batch: {cpu:.2f} CPU s = {cpu / batches * 1e6:.1f} us per stream batch, "
          f"{packets / cpu:,.0f} packets/s, {batches / cpu / 10:,.0f} streams per core")
    if not a.no_profile:
        prof = cProfile.Profile()
        prof.enable()
        run(sip, rtp, sip_end, a.partitions)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
