"""Independent references and capture rewriters for the offline ``spanscribe transcribe`` tests.

Nothing here imports the project's media code: the G.711 decoder is written from the ITU-T formula (and
checked against sox), captures are read and rewritten with our own record walker and dpkt, and the
reference PCM is placed from RTP timestamps by hand. Loaded by ``conftest.py`` (fixture ``ox``).
"""
from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import numpy.typing as npt

from spanscribe.stt.launch import running_server

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
EXAMPLE_PCAP = EXAMPLES / "call-g711.pcap"
EXAMPLE_EXPECTED = EXAMPLES / "call-g711.expected.json"
SIP_PORT = 5060
RATE = 8000
PKT = 160  # samples (= bytes of PCMU) per 20 ms packet in the example captures


# -- G.711 mu-law, from the standard ----------------------------------------------------------------
def ulaw_table() -> npt.NDArray[np.int16]:
    """256-entry mu-law decode table, ITU-T G.711 (section 2, table 2a) as a formula.

    A code's bits are inverted on the line; after inversion: sign (bit 7), segment e (bits 4-6),
    step m (bits 0-3). The 14-bit magnitude is ``(2m + 33) * 2**e - 33``; 16-bit output is x4.
    """
    out = np.zeros(256, dtype=np.int16)
    for code in range(256):
        u = ~code & 0xFF
        e, m = (u >> 4) & 0x07, u & 0x0F
        mag = ((2 * m + 33) * (1 << e) - 33) * 4
        out[code] = -mag if u & 0x80 else mag
    return out


ULAW = ulaw_table()


def ulaw_decode(payload: bytes) -> npt.NDArray[np.int16]:
    return ULAW[np.frombuffer(payload, dtype=np.uint8)]


def sox_ulaw_decode(payload: bytes) -> npt.NDArray[np.int16]:
    """The same decode by sox (``-t ul``), to show the table is the standard one."""
    out = subprocess.run(["sox", "-t", "ul", "-r", "8000", "-c", "1", "-", "-t", "raw", "-e", "signed-integer",
                          "-b", "16", "-L", "-"], input=payload, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<i2").astype(np.int16)


# -- pcap records (our own walker: byte-exact frames, no dpkt reader) ------------------------------------
@dataclass
class Record:
    ts_us: int
    frame: bytes


def read_pcap(path: Path) -> tuple[bytes, list[Record], int]:
    """(global header, whole records, byte offset after the last whole record). Classic LE µs pcap only."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, "tests expect a little-endian µs pcap"
    pos, recs = 24, []
    while pos + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, pos)
        if pos + 16 + incl > len(data):
            break
        recs.append(Record(sec * 1_000_000 + usec, data[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return data[:24], recs, pos


def write_pcap(path: Path, header: bytes, recs: list[Record]) -> None:
    with path.open("wb") as f:
        f.write(header)
        for r in recs:
            sec, usec = divmod(r.ts_us, 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(r.frame), len(r.frame)))
            f.write(r.frame)


@dataclass(frozen=True)
class Rtp:
    index: int  # record index in the capture
    cap_us: int
    dst: tuple[str, int]
    seq: int
    ts: int
    pt: int
    payload: bytes


def udp_of(frame: bytes) -> tuple[dpkt.ip.IP, dpkt.udp.UDP] | None:
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
        return None
    return ip, ip.data


def rtp_packets(recs: list[Record]) -> dict[tuple[str, int], list[Rtp]]:
    """RTP (every UDP datagram not on the SIP port) by destination tuple, in capture order."""
    out: dict[tuple[str, int], list[Rtp]] = {}
    for i, r in enumerate(recs):
        iu = udp_of(r.frame)
        if iu is None or SIP_PORT in (iu[1].sport, iu[1].dport):
            continue
        ip, u = iu
        b = bytes(u.data)
        dst = (str(ipaddress.ip_address(bytes(ip.dst))), int(u.dport))
        out.setdefault(dst, []).append(Rtp(i, r.ts_us, dst, int.from_bytes(b[2:4], "big"),
                                           int.from_bytes(b[4:8], "big"), b[1] & 0x7F, b[12:]))
    return out


def parse_tuple(s: str) -> tuple[str, int]:
    ip, port = s.rsplit(":", 1)
    return ip, int(port)


def reference_pcm(pkts: list[Rtp], origin_us: int, zero_seqs: frozenset[int] = frozenset()
                  ) -> npt.NDArray[np.int16]:
    """8 kHz mu-law decode of a clean stream's payloads placed at their RTP-timestamp positions.

    Position 0 is ``origin_us`` (the call start); the stream is anchored at its first packet's capture
    time, then every sample sits at ``anchor + (ts - ts_first)`` (mod 2**32). Packets whose sequence
    number is in ``zero_seqs`` contribute silence (what a lost packet must become), and the array ends
    with the last packet not in ``zero_seqs``.
    """
    pkts = sorted(pkts, key=lambda p: p.cap_us)
    first = pkts[0]
    anchor = (first.cap_us - origin_us) * RATE // 1_000_000
    kept = [p for p in pkts if p.seq not in zero_seqs]
    end = max(anchor + ((p.ts - first.ts) & 0xFFFFFFFF) + len(p.payload) for p in kept)
    ref = np.zeros(end, dtype=np.int16)
    for p in kept:
        i = anchor + ((p.ts - first.ts) & 0xFFFFFFFF)
        ref[i:i + len(p.payload)] = ulaw_decode(p.payload)
    return ref


# -- loss and reordering ---------------------------------------------------------------------------
@dataclass
class Degraded:
    dropped: dict[tuple[str, int], list[int]]  # dst tuple -> dropped sequence numbers
    delayed: dict[tuple[str, int], list[tuple[int, int]]]  # dst tuple -> (seq, packets late)
    rtp_total: int


def degrade(src: Path, dst: Path, loss: float, reorder: float, seed: int, repeat_lost: bool = False) -> Degraded:
    """Copy ``src`` to ``dst`` dropping a fraction ``loss`` of each RTP stream's packets and delaying a
    fraction ``reorder`` of the rest by 1-3 packets of the same stream (1 = swapped with its neighbour).

    A delayed packet gets the capture time of the packet it now follows plus a few µs, so the file stays
    in time order. SIP is untouched. Deterministic for a seed.
    """
    header, recs, _ = read_pcap(src)
    rng = np.random.default_rng(seed)
    streams = rtp_packets(recs)
    drop_idx: set[int] = set()
    new_ts: dict[int, int] = {}
    res = Degraded({}, {}, sum(len(v) for v in streams.values()))
    for key in sorted(streams):
        pk = streams[key]
        res.dropped[key], res.delayed[key] = [], []
        for j, p in enumerate(pk):
            u = rng.random()
            if u < loss:
                res.dropped[key].append(p.seq)
                if not repeat_lost:
                    drop_idx.add(p.index)
                elif j > 0:
                    iu = udp_of(recs[p.index].frame)
                    assert iu is not None
                    rtp = bytes(iu[1].data)
                    recs[p.index] = Record(recs[p.index].ts_us, _rebuild(recs[p.index].frame,
                                                                         rtp[:12] + pk[j - 1].payload))
            elif u < loss + reorder:
                k = int(rng.integers(1, 4))
                after = pk[j + k].cap_us if j + k < len(pk) else p.cap_us + k * 20_000
                new_ts[p.index] = after + k  # just after the packet it now follows
                res.delayed[key].append((p.seq, k))
    out = [Record(new_ts.get(i, r.ts_us), r.frame) for i, r in enumerate(recs) if i not in drop_idx]
    out.sort(key=lambda r: r.ts_us)  # stable: equal times keep their order
    write_pcap(dst, header, out)
    return res


# -- SDP/RTP rewrite: a codec we cannot decode -------------------------------------------------------
def _fix_content_length(sip: bytes) -> bytes:
    head, sep, body = sip.partition(b"\r\n\r\n")
    lines = [(b"Content-Length: " + str(len(body)).encode()) if ln.lower().startswith(b"content-length:") else ln
             for ln in head.split(b"\r\n")]
    return b"\r\n".join(lines) + sep + body


def _rebuild(frame: bytes, new_payload: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    u = ip.data
    u.data = new_payload
    u.ulen = len(u)
    u.sum = 0  # recomputed by dpkt when the IP packet is packed
    ip.len = len(ip)
    ip.sum = 0
    return bytes(eth)


def unknown_codec(src: Path, dst: Path, receiver: tuple[str, int], pt: int = 18, name: bytes = b"G729/8000") -> int:
    """The SDP of the party receiving on ``receiver`` offers only ``pt`` (``name``) plus telephone-event,
    and every RTP packet sent to ``receiver`` carries that payload type (payload bytes unchanged).
    Returns the number of RTP packets rewritten."""
    header, recs, _ = read_pcap(src)
    ip_s, port = receiver
    n = 0
    out = []
    for r in recs:
        iu = udp_of(r.frame)
        frame = r.frame
        if iu is not None:
            ip, u = iu
            data = bytes(u.data)
            if SIP_PORT in (u.sport, u.dport) and f"m=audio {port} ".encode() in data \
                    and f"c=IN IP4 {ip_s}\r\n".encode() in data:
                data = data.replace(f"m=audio {port} RTP/AVP 0 101".encode(), f"m=audio {port} RTP/AVP {pt} 101".encode())
                data = data.replace(b"a=rtpmap:0 PCMU/8000", f"a=rtpmap:{pt} ".encode() + name)
                frame = _rebuild(frame, _fix_content_length(data))
            elif str(ipaddress.ip_address(bytes(ip.dst))) == ip_s and u.dport == port:
                data = data[:1] + bytes([(data[1] & 0x80) | pt]) + data[2:]
                frame = _rebuild(frame, data)
                n += 1
        out.append(Record(r.ts_us, frame))
    write_pcap(dst, header, out)
    return n


# -- running transcribe and reading its output -----------------------------------------------------
def spanscribe_cmd() -> list[str]:
    return [sys.executable, "-m", "spanscribe"]


def transcribe(pcap: Path, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([*spanscribe_cmd(), "transcribe", str(pcap), "--out", str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


def read_wav(path: Path) -> tuple[int, npt.NDArray[np.int16]]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def safe_name(call_id: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:120] or "call"


def load_calls(out: Path) -> dict[str, dict[str, Any]]:
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    return {d["call_id"]: d for d in docs}


def wav_of(out: Path, call_id: str, speaker: str) -> Path:
    return out / f"{safe_name(call_id)}.{speaker}.wav"


def speaker_text(call: dict[str, Any], speaker: str) -> str:
    segs = sorted((s for s in call["segments"] if s["speaker"] == speaker), key=lambda s: s["start_s"])
    return " ".join(s["text"] for s in segs)


def onsets(pcm: npt.NDArray[np.int16], rate: int, thresh: int = 180, quiet_s: float = 0.5) -> list[float]:
    """Turn onsets (s, to 1 ms): the first 1 ms frame whose peak reaches ``thresh`` after at least
    ``quiet_s`` of frames below it (make_example trims each turn at |x| >= 200 before mu-law coding)."""
    hop = rate // 1000
    n = pcm.shape[0] // hop
    loud = np.abs(pcm[: n * hop].astype(np.int32)).reshape(n, hop).max(axis=1) >= thresh
    out, quiet = [], int(quiet_s * 1000)
    run = quiet  # the start of the file counts as quiet
    for i, v in enumerate(loud.tolist()):
        if v:
            if run >= quiet:
                out.append(i / 1000)
            run = 0
        else:
            run += 1
    return out


# -- the reference STT server as a subprocess --------------------------------------------------------
@contextmanager
def stt_server(log_dir: Path, max_sessions: int = 4, threads: int = 2, ready_s: float = 120) -> Iterator[str]:
    """``python -m spanscribe.stt.server --port 0`` (whisper); yields its ws:// URL once it says ready."""
    args = ["--port", "0", "--engine", "whisper", "--max-sessions", str(max_sessions), "--threads", str(threads)]
    with running_server(args, log_path=log_dir / f"stt-server-{time.monotonic_ns()}.log",
                        ready_timeout_s=ready_s) as (_proc, url):
        yield url


def capture_case(request: Any, example_expected: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """(capture, expected transcript) of a fixture parametrised over "example" (the bundled call) and
    "calls3" (three calls made by examples/make_example.py)."""
    if request.param == "example":
        return EXAMPLE_PCAP, example_expected
    return request.getfixturevalue("calls3")  # type: ignore[no-any-return]
