"""Packing and unpacking of the per-packet columns of one ``RtpStreamBatch`` entry.

The edge packs with :func:`pack_stream`; the centre reads with :func:`unpack_stream`, which makes
numpy views over the record's bytes (``numpy.frombuffer``, no copy). Column dtypes are fixed
little-endian so any platform and any language read them the same way.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

SEQ_DTYPE = np.dtype("<u2")
TS_DTYPE = np.dtype("<u4")
OFFSET_DTYPE = np.dtype("<u4")
PT_DTYPE = np.dtype("u1")
LEN_DTYPE = np.dtype("<u2")
MARKER_BIT = 0x80


class StreamColumns:
    """numpy views over one stream entry. All arrays have ``count`` elements.

    ``seq``, ``rtp_ts``, ``payload_len`` and ``pt_marker`` are zero-copy views of the record's bytes;
    ``capture_us`` (absolute, int64 microseconds), ``payload_type``, ``marker`` and ``payload_offsets``
    (``count + 1`` entries: packet i is ``payloads[off[i]:off[i+1]]``) are computed on first use.
    """

    __slots__ = ("stream_key", "src_ip", "src_port", "dst_ip", "dst_port", "ssrc", "seq", "rtp_ts",
                 "capture_offset_us", "base_capture_us", "pt_marker", "payload_len", "payloads", "_offsets")

    def __init__(self, *, stream_key: str, src_ip: str, src_port: int, dst_ip: str, dst_port: int, ssrc: int,
                 seq: npt.NDArray[np.uint16], rtp_ts: npt.NDArray[np.uint32],
                 capture_offset_us: npt.NDArray[np.uint32], base_capture_us: int,
                 pt_marker: npt.NDArray[np.uint8], payload_len: npt.NDArray[np.uint16], payloads: bytes) -> None:
        self.stream_key = stream_key
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_ip = dst_ip
        self.dst_port = dst_port
        self.ssrc = ssrc
        self.seq = seq
        self.rtp_ts = rtp_ts
        self.capture_offset_us = capture_offset_us
        self.base_capture_us = base_capture_us
        self.pt_marker = pt_marker
        self.payload_len = payload_len
        self.payloads = payloads
        self._offsets: npt.NDArray[np.int64] | None = None

    @property
    def count(self) -> int:
        return int(self.seq.shape[0])

    @property
    def capture_us(self) -> npt.NDArray[np.int64]:
        """Absolute capture time per packet, microseconds since the epoch."""
        return self.capture_offset_us.astype(np.int64) + self.base_capture_us

    @property
    def payload_type(self) -> npt.NDArray[np.uint8]:
        return np.bitwise_and(self.pt_marker, np.uint8(0x7F))

    @property
    def marker(self) -> npt.NDArray[np.bool_]:
        marker: npt.NDArray[np.bool_] = np.bitwise_and(self.pt_marker, np.uint8(MARKER_BIT)) != 0
        return marker

    @property
    def payload_offsets(self) -> npt.NDArray[np.int64]:
        if self._offsets is None:
            off = np.zeros(self.count + 1, dtype=np.int64)
            np.cumsum(self.payload_len, out=off[1:])
            self._offsets = off
        return self._offsets

    def payload(self, i: int) -> bytes:
        """Payload bytes of packet ``i``."""
        off = self.payload_offsets
        return self.payloads[int(off[i]):int(off[i + 1])]


class ColumnError(ValueError):
    """An RtpStreamBatch entry whose columns disagree with its count (a corrupt or hostile record)."""


def pack_stream(*, stream_key: str, src_ip: str, src_port: int, dst_ip: str, dst_port: int, ssrc: int,
                seq: Sequence[int], rtp_ts: Sequence[int], capture_us: Sequence[int],
                payload_type: Sequence[int], marker: Sequence[bool], payloads: Sequence[bytes]) -> dict[str, Any]:
    """Build one ``RtpStreamBatch`` dict from per-packet sequences (capture order)."""
    n = len(seq)
    if not (len(rtp_ts) == len(capture_us) == len(payload_type) == len(marker) == len(payloads) == n):
        raise ValueError("pack_stream: all per-packet sequences must have the same length")
    base = int(capture_us[0]) if n else 0
    cap = np.asarray(capture_us, dtype=np.int64) - base
    if n and (cap.min() < 0 or cap.max() > 0xFFFFFFFF):
        raise ValueError("pack_stream: capture times out of order or span more than 71 minutes")
    pt = np.asarray(payload_type, dtype=np.uint8) & 0x7F
    mk = np.asarray(marker, dtype=bool)
    lens = np.fromiter((len(p) for p in payloads), dtype=LEN_DTYPE, count=n)
    return {
        "stream_key": stream_key, "src_ip": src_ip, "src_port": src_port, "dst_ip": dst_ip,
        "dst_port": dst_port, "ssrc": int(ssrc), "count": n, "base_capture_us": base,
        "seq": np.asarray(seq, dtype=SEQ_DTYPE).tobytes(),
        "rtp_ts": np.asarray(rtp_ts, dtype=np.uint64).astype(TS_DTYPE).tobytes(),
        "capture_offset_us": cap.astype(OFFSET_DTYPE).tobytes(),
        "pt_marker": (pt | (mk.astype(np.uint8) << 7)).astype(PT_DTYPE).tobytes(),
        "payload_len": lens.tobytes(),
        "payloads": b"".join(payloads),
    }


def unpack_stream(entry: dict[str, Any]) -> StreamColumns:
    """numpy views over one decoded ``RtpStreamBatch`` dict.

    Raises:
        ColumnError: a column's byte length does not match ``count``, or payload lengths overrun.
    """
    n = int(entry["count"])
    if n < 0:
        raise ColumnError(f"RtpStreamBatch {entry.get('stream_key')}: negative count")

    def col(name: str, dtype: np.dtype[Any]) -> Any:
        raw = entry[name]
        if len(raw) != n * dtype.itemsize:
            raise ColumnError(f"RtpStreamBatch {entry.get('stream_key')}: column {name} has {len(raw)} bytes, "
                              f"expected {n * dtype.itemsize} for {n} packets")
        return np.frombuffer(raw, dtype=dtype)

    seq = col("seq", SEQ_DTYPE)
    ts = col("rtp_ts", TS_DTYPE)
    off = col("capture_offset_us", OFFSET_DTYPE)
    ptm = col("pt_marker", PT_DTYPE)
    lens = col("payload_len", LEN_DTYPE)
    payloads: bytes = entry["payloads"]
    total = int(lens.sum(dtype=np.int64))
    if total != len(payloads):
        raise ColumnError(f"RtpStreamBatch {entry.get('stream_key')}: payload lengths sum to {total}, "
                          f"payloads hold {len(payloads)} bytes")
    return StreamColumns(
        stream_key=entry["stream_key"], src_ip=entry["src_ip"], src_port=int(entry["src_port"]),
        dst_ip=entry["dst_ip"], dst_port=int(entry["dst_port"]), ssrc=int(entry["ssrc"]),
        seq=seq, rtp_ts=ts, capture_offset_us=off, base_capture_us=int(entry["base_capture_us"]),
        pt_marker=ptm, payload_len=lens, payloads=payloads,
    )
