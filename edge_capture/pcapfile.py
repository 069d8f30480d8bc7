"""Capture file source: pcap (µs and ns), pcapng, either gzip-compressed, from a path or a stream (stdin).

Yields ``(ts_us, linktype, frame)`` with ``frame`` a memoryview into a read buffer (valid until the next
item). Reads in large chunks and walks record headers with ``struct.unpack_from`` (dpkt's readers build
an object per packet; this costs ~0.3 µs per record). A truncated last record ends the file quietly
(a capture still being written); a corrupt header raises :class:`PcapError`.
"""
from __future__ import annotations

import gzip
import io
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

PCAP_MAGICS = {
    0xA1B2C3D4: ("<", 1), 0xD4C3B2A1: (">", 1),  # microsecond, as read little-endian
    0xA1B23C4D: ("<", 1000), 0x4D3CB2A1: (">", 1000),  # nanosecond
}
PCAPNG_SHB = 0x0A0D0D0A
CHUNK = 1 << 20

Item = tuple[int, int, memoryview]


class PcapError(ValueError):
    """The file is not a capture we can read, or its structure is corrupt."""


def open_capture(path: str, stdin: BinaryIO | None = None) -> BinaryIO:
    """Open ``path`` (``-`` = stdin) as a binary stream, transparently gunzipping."""
    if path == "-":
        import sys

        raw: Any = stdin if stdin is not None else sys.stdin.buffer
        if not hasattr(raw, "peek"):
            raw = io.BufferedReader(raw)
        head = raw.peek(2)[:2]
    else:
        with open(path, "rb") as probe:
            head = probe.read(2)
        if head == b"\x1f\x8b":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    result: BinaryIO = raw
    return result


def read_capture(f: BinaryIO, stop: Callable[[], bool] = lambda: False, speed: float = 0.0,
                 progress: Callable[[int], None] | None = None) -> Iterator[Item]:
    """Yield (ts_us, linktype, frame) for every packet of a pcap or pcapng stream.

    ``speed`` > 0 paces replay at capture time (1 = real time, 2 = twice as fast); 0 = as fast as
    possible. ``stop()`` is polled once per chunk; ``progress(bytes_read)`` is called once per chunk.
    """
    head = _read_exact(f, 4)
    if len(head) < 4:
        raise PcapError("capture: file shorter than a header")
    magic_le = struct.unpack("<I", head)[0]
    if magic_le == PCAPNG_SHB:
        items = _pcapng(f, head, stop, progress)
    elif magic_le in PCAP_MAGICS:
        items = _pcap(f, head, stop, progress)
    else:
        raise PcapError(f"capture: unknown magic 0x{magic_le:08x} (not pcap or pcapng)")
    if speed and speed > 0:
        return _paced(items, speed)
    return items


def _read_exact(f: BinaryIO, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        b = f.read(n - len(out))
        if not b:
            break
        out += b
    return bytes(out)


def _paced(items: Iterator[Item], speed: float) -> Iterator[Item]:
    t0_wall: float | None = None
    t0_cap = 0
    for item in items:
        if t0_wall is None:
            t0_wall = time.monotonic()
            t0_cap = item[0]
        due = t0_wall + (item[0] - t0_cap) / 1e6 / speed
        delay = due - time.monotonic()
        if delay > 0.0005:
            time.sleep(delay)
        yield item


def _is_stream(f: Any) -> bool:
    try:
        import os
        import stat

        return not stat.S_ISREG(os.fstat(f.fileno()).st_mode)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return True


class _Chunker:
    """A growing window over the stream: ``buf`` holds unread bytes from ``pos``."""

    def __init__(self, f: BinaryIO, initial: bytes, progress: Callable[[int], None] | None) -> None:
        self.f = f
        self.buf = initial
        self.pos = 0
        self.total = len(initial)
        self.eof = False
        self.progress = progress
        # A pipe (tcpdump -w - | spanscribe edge --pcap -) gets read1: what is there now, so frames are
        # not held back waiting for a full chunk; a regular file gets full-size reads (bigger blocks).
        self._read = getattr(f, "read1", f.read) if _is_stream(f) else f.read

    def fill(self, need: int) -> bool:
        """Make at least ``need`` bytes available from ``pos``; False at end of file."""
        while len(self.buf) - self.pos < need:
            if self.eof:
                return False
            more = self._read(max(CHUNK, need - (len(self.buf) - self.pos)))
            if not more:
                self.eof = True
                return False
            self.total += len(more)
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
            if self.progress is not None:
                self.progress(self.total)
        return True


def _pcap(f: BinaryIO, head: bytes, stop: Callable[[], bool], progress: Callable[[int], None] | None) -> Iterator[Item]:
    rest = _read_exact(f, 20)
    if len(rest) < 20:
        raise PcapError("pcap: truncated global header")
    endian, ts_div = PCAP_MAGICS[struct.unpack("<I", head)[0]]
    _vmaj, _vmin, _tz, _sig, snaplen, network = struct.unpack(endian + "HHiIII", rest)
    linktype = network & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    unpack = rec.unpack_from
    c = _Chunker(f, b"", progress)
    max_len = max(snaplen, 262144) if snaplen else 262144
    while True:
        if stop():
            return
        if not c.fill(16):
            return
        buf = c.buf
        mv = memoryview(buf)
        pos = c.pos
        end = len(buf)
        # Walk every whole record in the current window without touching the stream.
        while pos + 16 <= end:
            sec, frac, incl, _orig = unpack(buf, pos)
            if incl > max_len:
                raise PcapError(f"pcap: record length {incl} at byte {c.total - end + pos} exceeds the snap length")
            nxt = pos + 16 + incl
            if nxt > end:
                break
            yield (sec * 1_000_000 + (frac // ts_div if ts_div != 1 else frac), linktype, mv[pos + 16:nxt])
            pos = nxt
        c.pos = pos
        if pos + 16 <= end:  # a partial record: need more bytes
            incl = unpack(buf, pos)[2]
            if not c.fill(16 + incl):
                return
        elif not c.fill(16):
            return


def _pcapng(f: BinaryIO, head: bytes, stop: Callable[[], bool], progress: Callable[[int], None] | None) -> Iterator[Item]:
    """pcapng: SHB, IDB (link type, if_tsresol), EPB, SPB and obsolete PB blocks; others skipped."""
    c = _Chunker(f, head, progress)
    endian = "<"
    ifaces: list[tuple[int, int, int]] = []  # (linktype, ticks per second, tsoffset seconds)
    while True:
        if stop():
            return
        if not c.fill(12):
            return
        buf = c.buf
        pos = c.pos
        btype = struct.unpack_from(endian + "I", buf, pos)[0]
        if btype == PCAPNG_SHB:
            bom = buf[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise PcapError("pcapng: bad byte-order magic")
            ifaces = []
        blen = struct.unpack_from(endian + "I", buf, pos + 4)[0]
        if blen < 12 or blen % 4 or blen > 64 << 20:
            raise PcapError(f"pcapng: bad block length {blen}")
        if not c.fill(blen):
            return
        buf = c.buf
        pos = c.pos
        body = memoryview(buf)[pos + 8:pos + blen - 4]
        c.pos = pos + blen
        if btype == 1:  # Interface Description Block
            if len(body) < 8:
                raise PcapError("pcapng: truncated IDB")
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            tps, tsoff = 1_000_000, 0
            opos = 8
            while opos + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, opos)
                if code == 0:
                    break
                val = body[opos + 4:opos + 4 + olen]
                if code == 9 and olen >= 1:  # if_tsresol
                    r = val[0]
                    tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
                elif code == 14 and olen >= 8:  # if_tsoffset
                    tsoff = struct.unpack_from(endian + "q", val, 0)[0]
                opos += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, tps, tsoff))
        elif btype == 6 or btype == 2:  # Enhanced Packet Block / obsolete Packet Block
            if len(body) < 20:
                raise PcapError("pcapng: truncated packet block")
            if btype == 6:
                iface, hi, lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body, 0)
            else:
                iface, _drops, hi, lo, caplen, _orig = struct.unpack_from(endian + "HHIIII", body, 0)
            if iface >= len(ifaces):
                raise PcapError(f"pcapng: packet on undeclared interface {iface}")
            if 20 + caplen > len(body):
                raise PcapError("pcapng: captured length overruns the block")
            linktype, tps, tsoff = ifaces[iface]
            ticks = (hi << 32) | lo
            ts_us = ticks * 1_000_000 // tps if tps != 1_000_000 else ticks
            yield (ts_us + tsoff * 1_000_000, linktype, body[20:20 + caplen])
        elif btype == 3:  # Simple Packet Block: no timestamp, first interface
            if not ifaces or len(body) < 4:
                raise PcapError("pcapng: simple packet block without interface")
            orig = struct.unpack_from(endian + "I", body, 0)[0]
            yield (0, ifaces[0][0], body[4:4 + min(orig, len(body) - 4)])


Block = tuple[int, bytes, list[int], Any, Any]  # linktype, buf, offsets, lengths (int64 array), ts_us (int64 array)


def read_pcap_blocks(f: BinaryIO, stop: Callable[[], bool] = lambda: False,
                     progress: Callable[[int], None] | None = None) -> Iterator[Block] | None:
    """Blocks of a classic pcap stream for the vectorised fast path, or None if ``f`` is not pcap
    (then use :func:`read_capture`; nothing has been consumed from a seekable file).

    Yields ``(linktype, buf, offsets, lengths, ts_us)``: every whole record in one read window, with
    frame ``i`` at ``buf[offsets[i]:offsets[i] + lengths[i]]``. ``buf`` is immutable bytes.
    """
    peek: Any = getattr(f, "peek", None)
    head = peek(4)[:4] if peek is not None else b""
    if len(head) < 4:
        return None
    magic = struct.unpack("<I", head)[0]
    if magic == PCAPNG_SHB:
        return _pcapng_blocks(f, stop, progress)
    if magic not in PCAP_MAGICS:
        return None
    return _pcap_blocks(f, stop, progress)


def _pcapng_blocks(f: BinaryIO, stop: Callable[[], bool], progress: Callable[[int], None] | None) -> Iterator[Block]:
    """pcapng as blocks: every whole EPB/SPB/PB of a read window with one link type; other blocks
    (SHB, IDB) are interpreted as in :func:`_pcapng`, unknown ones skipped."""
    import numpy as np

    c = _Chunker(f, b"", progress)
    endian = "<"
    ifaces: list[tuple[int, int, int]] = []  # (linktype, ticks per second, tsoffset seconds)
    while not stop():
        if not c.fill(12):
            return
        buf = c.buf
        pos = c.pos
        end = len(buf)
        offs: list[int] = []
        lens: list[int] = []
        tss: list[int] = []
        cur_lt = -1
        need = 0
        while pos + 12 <= end:
            btype = struct.unpack_from(endian + "I", buf, pos)[0]
            if btype == PCAPNG_SHB:
                bom = buf[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    raise PcapError("pcapng: bad byte-order magic")
                ifaces = []
            blen = struct.unpack_from(endian + "I", buf, pos + 4)[0]
            if blen < 12 or blen % 4 or blen > 64 << 20:
                raise PcapError(f"pcapng: bad block length {blen}")
            if pos + blen > end:
                need = blen
                break
            b0 = pos + 8  # body start
            blen_body = blen - 12
            if btype == 1:
                if blen_body < 8:
                    raise PcapError("pcapng: truncated IDB")
                linktype = struct.unpack_from(endian + "H", buf, b0)[0]
                tps, tsoff = 1_000_000, 0
                opos = b0 + 8
                oend = b0 + blen_body
                while opos + 4 <= oend:
                    code, olen = struct.unpack_from(endian + "HH", buf, opos)
                    if code == 0:
                        break
                    if code == 9 and olen >= 1:
                        r = buf[opos + 4]
                        tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
                    elif code == 14 and olen >= 8:
                        tsoff = struct.unpack_from(endian + "q", buf, opos + 4)[0]
                    opos += 4 + ((olen + 3) & ~3)
                ifaces.append((linktype, tps, tsoff))
            elif btype in (6, 2, 3):
                if btype == 3:
                    if not ifaces or blen_body < 4:
                        raise PcapError("pcapng: simple packet block without interface")
                    orig = struct.unpack_from(endian + "I", buf, b0)[0]
                    lt, ts_us, data, caplen = ifaces[0][0], 0, b0 + 4, min(orig, blen_body - 4)
                else:
                    if blen_body < 20:
                        raise PcapError("pcapng: truncated packet block")
                    if btype == 6:
                        iface, hi, lo, caplen, _orig = struct.unpack_from(endian + "IIIII", buf, b0)
                    else:
                        iface, _drops, hi, lo, caplen, _orig = struct.unpack_from(endian + "HHIIII", buf, b0)
                    if iface >= len(ifaces):
                        raise PcapError(f"pcapng: packet on undeclared interface {iface}")
                    if 20 + caplen > blen_body:
                        raise PcapError("pcapng: captured length overruns the block")
                    lt, tps, tsoff = ifaces[iface]
                    ticks = (hi << 32) | lo
                    ts_us = (ticks * 1_000_000 // tps if tps != 1_000_000 else ticks) + tsoff * 1_000_000
                    data = b0 + 20
                if lt != cur_lt and offs:
                    yield (cur_lt, buf, offs, np.asarray(lens, dtype=np.int64), np.asarray(tss, dtype=np.int64))
                    offs, lens, tss = [], [], []
                cur_lt = lt
                offs.append(data)
                lens.append(caplen)
                tss.append(ts_us)
            pos += blen
        c.pos = pos
        if offs:
            yield (cur_lt, buf, offs, np.asarray(lens, dtype=np.int64), np.asarray(tss, dtype=np.int64))
        if need:
            if not c.fill(need):
                return
        elif not c.fill(12):
            return


def _pcap_blocks(f: BinaryIO, stop: Callable[[], bool], progress: Callable[[int], None] | None) -> Iterator[Block]:
    import numpy as np

    hdr = _read_exact(f, 24)
    if len(hdr) < 24:
        raise PcapError("pcap: truncated global header")
    endian, ts_div = PCAP_MAGICS[struct.unpack("<I", hdr[:4])[0]]
    _vmaj, _vmin, _tz, _sig, snaplen, network = struct.unpack(endian + "HHiIII", hdr[4:])
    linktype = network & 0x0FFFFFFF
    unpack_len = struct.Struct(endian + "I").unpack_from
    max_len = max(snaplen, 262144) if snaplen else 262144
    rec_dtype = np.dtype(endian + "u4")
    cols12 = np.arange(12, dtype=np.int64)
    c = _Chunker(f, b"", progress)
    while not stop():
        if not c.fill(16):
            return
        buf = c.buf
        pos = c.pos
        end = len(buf)
        offs: list[int] = []
        append = offs.append
        # Only the record lengths are read one by one (they chain the records); timestamps and lengths
        # of the whole window are then read with numpy.
        while pos + 16 <= end:
            incl = unpack_len(buf, pos + 8)[0]
            if incl > max_len:
                raise PcapError(f"pcap: record length {incl} exceeds the snap length")
            nxt = pos + 16 + incl
            if nxt > end:
                break
            append(pos + 16)
            pos = nxt
        c.pos = pos
        if offs:
            o = np.asarray(offs, dtype=np.int64)
            hv = np.frombuffer(buf, dtype=np.uint8)[(o - 16)[:, None] + cols12].view(rec_dtype).reshape(-1, 3)
            frac = hv[:, 1].astype(np.int64)
            ts = hv[:, 0].astype(np.int64) * 1_000_000 + (frac // ts_div if ts_div != 1 else frac)
            yield (linktype, buf, offs, hv[:, 2].astype(np.int64), ts)
        if pos + 16 <= end:
            if not c.fill(16 + unpack_len(buf, pos + 8)[0]):
                return
        elif not c.fill(16):
            return
