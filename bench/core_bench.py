"""Centre core micro-benchmark: RTP join + jitter + decode + resample for many concurrent PCMU streams.

    .venv/bin/python bench/core_bench.py [--streams 500] [--seconds 10] [--per-record 50] [--disorder 0.01] [--per-stream]
                                         [--warmup 0.5]

Builds the RtpBatch records of N concurrent 20 ms PCMU streams flushed every 100 ms (5 packets per
stream per batch, ``--per-record`` streams per record as the edge bundles them per partition) outside
the timed region, then measures CPU time (``time.process_time``) of:

- ``joiner``: ``MediaJoiner.on_rtp_batch`` end to end (unpack columns, binding lookup, jitter buffer,
  G.711 table decode, 8 -> 16 kHz FIR resample, AudioChunk out) plus ``expire`` once per interval;
  the vectorised record path unless ``--per-stream`` (every entry through the per-stream path, which
  gives the same output); ``--warmup S`` leaves the first S seconds of every stream (its first packets,
  which the jitter buffer holds for one window and the per-stream path plays) out of the timing: the
  steady state of long calls;
- ``decode``: the PCMU table lookup alone on the same payloads;
- ``jitter``: ``JitterBuffer.add_arrays`` alone;
- ``resample``: the stateful 8 -> 16 kHz resampler alone on 100 ms blocks.

Reports packets/s and audio seconds per CPU second (real-time factor per core).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from schemas.rtp_columns import pack_stream, unpack_stream
from streams.core.codecs import ULAW_TABLE, Resampler
from streams.core.jitter import JitterBuffer
from streams.core.media import AudioChunk, MediaJoiner

T0 = 1_700_000_000_000_000
PCMU = [{"payload_type": 0, "encoding": "PCMU", "clock_rate": 8000, "channels": 1, "fmtp": None},
        {"payload_type": 101, "encoding": "telephone-event", "clock_rate": 8000, "channels": 1, "fmtp": None}]


def build(streams: int, seconds: float, per_record: int, disorder: float, seed: int = 1) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    bindings = [{"stream_key": f"s1/10.1.{i >> 8}.{i & 255}/{20000 + 2 * i}", "site": "s1", "call_id": f"call-{i}",
                 "speaker": "callee", "role": None, "call_start_us": T0, "valid_from_us": T0, "valid_until_us": None,
                 "version": 1, "encrypted": False, "payload_map": PCMU} for i in range(streams)]
    intervals = int(seconds * 10)
    noise = rng.integers(0, 256, size=(streams, 160 * 5), dtype=np.uint8)
    records = []
    for k in range(intervals):
        entries = []
        for i in range(streams):
            seq = [(i * 7 + k * 5 + j) & 0xFFFF for j in range(5)]
            ts = [(k * 5 + j) * 160 for j in range(5)]
            cap = [T0 + (k * 5 + j) * 20_000 + (i % 20) * 1000 for j in range(5)]
            pays = [noise[i, j * 160:(j + 1) * 160].tobytes() for j in range(5)]
            if disorder and rng.random() < disorder * 5:  # swap two packets (reorder)
                a, b = rng.choice(5, 2, replace=False)
                for col in (seq, ts, pays):
                    col[a], col[b] = col[b], col[a]
            if disorder and rng.random() < disorder * 5:  # drop one (loss)
                d = int(rng.integers(0, 5))
                seq, ts, cap, pays = seq[:d] + seq[d + 1:], ts[:d] + ts[d + 1:], cap[:d] + cap[d + 1:], pays[:d] + pays[d + 1:]
            b = bindings[i]
            entries.append(pack_stream(stream_key=b["stream_key"], src_ip="10.9.0.1", src_port=4000, dst_ip="x",
                                       dst_port=1, ssrc=1000 + i, seq=seq, rtp_ts=ts, capture_us=cap,
                                       payload_type=[0] * len(seq), marker=[False] * len(seq), payloads=pays))
        for r in range(0, streams, per_record):
            records.append({"site": "s1", "edge_id": "e", "edge_start_us": T0, "batch_seq": len(records),
                            "flush_ts_us": T0 + (k + 1) * 100_000, "streams": entries[r:r + per_record]})
    return bindings, records


def bench_joiner(bindings: list[dict[str, Any]], records: list[dict[str, Any]], per_interval: int,
                 per_stream: bool = False, warmup_records: int = 0) -> dict[str, float]:
    j = MediaJoiner()
    j._fast_path = not per_stream
    for b in bindings:
        j.on_binding(b)
    for n, rec in enumerate(records[:warmup_records]):
        j.on_rtp_batch(rec)
        if (n + 1) % per_interval == 0:
            j.expire(rec["flush_ts_us"])
    records = records[warmup_records:]
    packets = sum(e["count"] for r in records for e in r["streams"])
    samples = 0
    t = time.process_time()
    for n, rec in enumerate(records):
        for o in j.on_rtp_batch(rec):
            if isinstance(o, AudioChunk):
                samples += o.pcm.shape[0]
        if (n + 1) % per_interval == 0:
            j.expire(rec["flush_ts_us"])
    cpu = time.process_time() - t
    return {"cpu_s": cpu, "packets": packets, "audio_s": samples / 16000}


def bench_parts(records: list[dict[str, Any]]) -> dict[str, float]:
    entries = [unpack_stream(e) for r in records for e in r["streams"]]
    t = time.process_time()
    n = 0
    for c in entries:
        n += ULAW_TABLE[np.frombuffer(c.payloads, dtype=np.uint8)].shape[0]
    decode = time.process_time() - t
    jbs: dict[str, JitterBuffer] = {}
    t = time.process_time()
    for c in entries:
        jb = jbs.get(c.stream_key)
        if jb is None:
            jb = jbs[c.stream_key] = JitterBuffer(8000, origin_us=T0)
        jb.add_arrays(c.ssrc, c.seq, c.rtp_ts, c.capture_us, c.payload_type, c.payload_offsets, c.payloads)
    jitter = time.process_time() - t
    blocks = [ULAW_TABLE[np.frombuffer(c.payloads, dtype=np.uint8)] for c in entries]
    rs: dict[str, Resampler] = {}
    t = time.process_time()
    for c, blk in zip(entries, blocks, strict=True):
        r = rs.get(c.stream_key)
        if r is None:
            r = rs[c.stream_key] = Resampler(8000, 16000)
        r.process(blk)
    resample = time.process_time() - t
    packets = sum(c.count for c in entries)
    return {"decode_s": decode, "jitter_s": jitter, "resample_s": resample, "packets": packets, "samples8k": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--per-record", type=int, default=50)
    ap.add_argument("--disorder", type=float, default=0.0, help="per-packet probability of reorder and of loss")
    ap.add_argument("--per-stream", action="store_true", help="switch the vectorised record path off")
    ap.add_argument("--warmup", type=float, default=0.0, help="seconds of every stream left out of the timing")
    a = ap.parse_args()
    bindings, records = build(a.streams, a.seconds, a.per_record, a.disorder)
    per_interval = -(-a.streams // a.per_record)
    warm = int(round(a.warmup * 10)) * per_interval
    res = bench_joiner(bindings, records, per_interval, a.per_stream, warm)
    live_s = a.seconds - warm // per_interval / 10
    parts = bench_parts(records)
    pk = res["packets"]
    print(f"{a.streams} PCMU streams x {a.seconds:g} s, 100 ms batches, {a.per_record} streams/record, "
          f"disorder {a.disorder:g}: {len(records)} records, {int(pk)} packets timed (warm-up {a.warmup:g} s)")
    print(f"joiner end to end : {res['cpu_s']:.2f} CPU s  {pk / res['cpu_s']:,.0f} packets/s  "
          f"{res['audio_s'] / res['cpu_s']:,.0f} audio s per CPU s = live streams per core  "
          f"({res['cpu_s'] / live_s * 100:.0f}% of one core for {a.streams} live streams"
          f"{', per-stream path' if a.per_stream else ''})")
    audio = parts["samples8k"] / 8000
    for name in ("decode", "jitter", "resample"):
        s = parts[f"{name}_s"]
        print(f"{name:<17}: {s:.3f} CPU s  {parts['packets'] / s:,.0f} packets/s  {audio / s:,.0f} audio s per CPU s")


if __name__ == "__main__":
    main()
