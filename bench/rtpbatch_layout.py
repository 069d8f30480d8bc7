"""Measure the RtpBatch layout decision: packed little-endian columns vs an Avro array of per-packet
records, for one flush interval's record (50 streams x 5 packets of 160-byte G.711 = 100 ms).

Prints encode and decode+read cost per record and per packet for both layouts, in the same process.
Reproduce: .venv/bin/python bench/rtpbatch_layout.py
"""
from __future__ import annotations

import io
import time

import fastavro
import numpy as np

from schemas.codec import AvroCodec
from schemas.rtp_columns import pack_stream, unpack_stream

STREAMS, PACKETS = 50, 5
PER_PACKET_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "RtpBatchRows", "fields": [
        {"name": "site", "type": "string"},
        {"name": "streams", "type": {"type": "array", "items": {
            "type": "record", "name": "Stream", "fields": [
                {"name": "stream_key", "type": "string"}, {"name": "ssrc", "type": "long"},
                {"name": "packets", "type": {"type": "array", "items": {
                    "type": "record", "name": "Packet", "fields": [
                        {"name": "seq", "type": "int"}, {"name": "rtp_ts", "type": "long"},
                        {"name": "capture_us", "type": "long"}, {"name": "pt", "type": "int"},
                        {"name": "marker", "type": "boolean"}, {"name": "payload", "type": "bytes"}]}}}]}}}]})


def make() -> tuple[dict, dict]:
    rng = np.random.default_rng(1)
    cols, rows = [], []
    for s in range(STREAMS):
        seq = [(1000 + i) & 0xFFFF for i in range(PACKETS)]
        ts = [160 * i for i in range(PACKETS)]
        cap = [1_700_000_000_000_000 + 20_000 * i for i in range(PACKETS)]
        pls = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(PACKETS)]
        key = f"site/10.0.{s // 250}.{s % 250}/{10000 + 2 * s}"
        cols.append(pack_stream(stream_key=key, src_ip="10.1.0.1", src_port=20000, dst_ip="10.0.0.1",
                                dst_port=10000 + 2 * s, ssrc=s, seq=seq, rtp_ts=ts, capture_us=cap,
                                payload_type=[0] * PACKETS, marker=[False] * PACKETS, payloads=pls))
        rows.append({"stream_key": key, "ssrc": s, "packets": [
            {"seq": a, "rtp_ts": b, "capture_us": c, "pt": 0, "marker": False, "payload": p}
            for a, b, c, p in zip(seq, ts, cap, pls, strict=True)]})
    col_rec = {"site": "site", "edge_id": "e", "edge_start_us": 0, "batch_seq": 0, "flush_ts_us": 0, "streams": cols}
    return col_rec, {"site": "site", "streams": rows}


def bench(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    col_rec, row_rec = make()
    codec = AvroCodec("RtpBatch")
    col_bytes = codec.encode(col_rec)

    def row_encode() -> bytes:
        b = io.BytesIO()
        fastavro.schemaless_writer(b, PER_PACKET_SCHEMA, row_rec)
        return b.getvalue()

    row_bytes = row_encode()

    def col_read() -> int:
        rec = codec.decode(col_bytes)
        total = 0
        for e in rec["streams"]:
            c = unpack_stream(e)
            total += int(c.seq.astype(np.int64).sum()) + len(c.payloads)
        return total

    def row_read() -> int:
        rec = fastavro.schemaless_reader(io.BytesIO(row_bytes), PER_PACKET_SCHEMA, None)
        total = 0
        for s in rec["streams"]:
            seq = np.fromiter((p["seq"] for p in s["packets"]), dtype=np.int64)
            total += int(seq.sum()) + sum(len(p["payload"]) for p in s["packets"])
        return total

    assert col_read() == row_read()
    n = 2000
    pk = STREAMS * PACKETS
    res = {
        "columns": (bench(lambda: codec.encode(col_rec), n), bench(col_read, n), len(col_bytes)),
        "per-packet records": (bench(row_encode, n), bench(row_read, n), len(row_bytes)),
    }
    print(f"RtpBatch layout, one record = {STREAMS} streams x {PACKETS} packets x 160 B ({pk} packets)")
    print(f"{'layout':<20} {'encode us/rec':>14} {'decode+read us/rec':>19} {'us/packet (both)':>17} {'bytes':>7}")
    for name, (enc, dec, size) in res.items():
        print(f"{name:<20} {enc * 1e6:14.1f} {dec * 1e6:19.1f} {(enc + dec) * 1e6 / pk:17.2f} {size:7d}")
    c, r = res["columns"], res["per-packet records"]
    print(f"columns are {(r[0] + r[1]) / (c[0] + c[1]):.1f}x faster end to end")


if __name__ == "__main__":
    main()
