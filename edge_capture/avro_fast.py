"""A specialised Avro binary writer for ``RtpBatch``: the same bytes as fastavro, about 2x cheaper.

fastavro's C writer costs ~4.6 us per stream entry (measured); on a busy edge that is ~1 us per RTP packet,
as much as the whole capture path. Two observations make a specialised writer pay: six of an entry's
fourteen fields (stream key, addresses, ports, SSRC) never change for a stream, so their encoding is
cached per stream; and the rest are a few small integers (table lookups) and byte strings. The output is
checked against :class:`schemas.codec.AvroCodec` in the tests, byte for byte.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _long(n: int) -> bytes:
    """Avro long: zigzag, then little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_N = 1 << 15
_SMALL = [_long(i) for i in range(_N)]


def _l(n: int) -> bytes:
    return _SMALL[n] if 0 <= n < _N else _long(n)


_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)
_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)


def _longs(values: list[int]) -> list[bytes]:
    """Avro longs of many values at once (numpy: zigzag, 7-bit groups, continuation bits)."""
    v = np.asarray(values, dtype=np.int64)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    groups = ((z[:, None] >> _SHIFTS) & np.uint64(0x7F)).astype(np.uint8)
    nbytes = 1 + (z[:, None] >= _LIMITS).sum(axis=1)
    groups[np.arange(10)[None, :] < (nbytes - 1)[:, None]] |= 0x80
    raw = groups.tobytes()
    return [raw[10 * i:10 * i + n] for i, n in enumerate(nbytes.tolist())]


def _str(s: str) -> bytes:
    b = s.encode()
    return _l(len(b)) + b


class RtpBatchWriter:
    """Encode RtpBatch dicts to the Avro binary body (no framing); ``header`` is prepended."""

    def __init__(self, header: bytes = b"", max_cache: int = 200_000) -> None:
        self.header = header
        self._prefix: dict[tuple[Any, ...], bytes] = {}
        self.max_cache = max_cache

    def encode(self, rec: dict[str, Any]) -> bytes:
        parts = [self.header, _str(rec["site"]), _str(rec["edge_id"]), _l(rec["edge_start_us"]),
                 _l(rec["batch_seq"]), _l(rec["flush_ts_us"])]
        streams = rec["streams"]
        if streams:
            parts.append(_l(len(streams)))
            cache = self._prefix
            bases = _longs([e["base_capture_us"] for e in streams])
            for i, e in enumerate(streams):
                k = (e["stream_key"], e["src_ip"], e["src_port"], e["dst_ip"], e["dst_port"], e["ssrc"])
                pre = cache.get(k)
                if pre is None:
                    if len(cache) >= self.max_cache:
                        cache.clear()
                    pre = cache[k] = b"".join((_str(k[0]), _str(k[1]), _l(k[2]), _str(k[3]), _l(k[4]), _l(k[5])))
                seq, rts, off, ptm, plen, pay = (e["seq"], e["rtp_ts"], e["capture_offset_us"], e["pt_marker"],
                                                 e["payload_len"], e["payloads"])
                parts += (pre, _l(e["count"]), bases[i], _l(len(seq)), seq, _l(len(rts)), rts,
                          _l(len(off)), off, _l(len(ptm)), ptm, _l(len(plen)), plen, _l(len(pay)), pay)
        parts.append(b"\x00")
        return b"".join(parts)
