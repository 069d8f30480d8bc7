"""The bundled example capture (examples/call-g711.pcap): structure, audio, determinism, tshark's view.

What is expected here comes from the generator's inputs (texts, timings) and from tshark, not from
spanscribe's own parsers (which are tested against this file elsewhere).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import dpkt
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
PCAP = EXAMPLES / "call-g711.pcap"
EXPECTED = EXAMPLES / "call-g711.expected.json"


def load_make_example() -> ModuleType:
    name = "spanscribe_examples_make_example"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "make_example.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


def udp_packets(path: Path) -> list[tuple[float, str, int, str, int, bytes]]:
    out = []
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            assert isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP)
            u = ip.data
            out.append((ts, ".".join(map(str, ip.src)), u.sport, ".".join(map(str, ip.dst)), u.dport, bytes(u.data)))
    return out


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(EXPECTED.read_text())


@pytest.fixture(scope="module")
def packets() -> list[tuple[float, str, int, str, int, bytes]]:
    return udp_packets(PCAP)


def test_small_and_sorted(packets: list, expected: dict) -> None:
    assert PCAP.stat().st_size < 1_500_000
    assert len(packets) == expected["packets"]
    times = [p[0] for p in packets]
    assert times == sorted(times)
    assert times[0] == expected["capture_epoch"]


def test_sip_ladder(packets: list) -> None:
    sip = [p for p in packets if p[2] == 5060 and p[4] == 5060]
    first_lines = [p[5].split(b"\r\n", 1)[0].decode() for p in sip]
    assert [line.split(" ")[0] if not line.startswith("SIP/2.0") else line[8:] for line in first_lines] == [
        "INVITE", "100 Trying", "180 Ringing", "200 OK", "ACK", "BYE", "200 OK"]
    invite, ok = sip[0][5], sip[3][5]
    assert b"c=IN IP4 10.0.0.10\r\n" in invite and b"m=audio 40000 RTP/AVP 0 101\r\n" in invite
    assert b"c=IN IP4 10.0.0.20\r\n" in ok and b"m=audio 50000 RTP/AVP 0 101\r\n" in ok
    for _, _, _, _, _, raw in sip:  # Content-Length is exact
        head, body = raw.split(b"\r\n\r\n", 1)
        (cl,) = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
        assert cl == len(body)


def test_rtp_streams(packets: list, expected: dict) -> None:
    call = expected["calls"][0]
    for spk, d in call["speakers"].items():
        src_ip, src_port = d["rtp"]["src"].split(":")
        rtp = [p[5] for p in packets if p[1] == src_ip and p[2] == int(src_port) and p[4] != 5060]
        assert len(rtp) == d["rtp"]["packets"], spk
        hdrs = [struct.unpack("!BBHII", r[:12]) for r in rtp]
        assert all(len(r) == 172 for r in rtp)
        assert all(h[0] == 0x80 and h[1] & 0x7F == 0 for h in hdrs)  # V=2, PT 0 (PCMU)
        assert [h[1] >> 7 for h in hdrs[:2]] == [1, 0]  # marker on the first packet only
        assert [h[2] for h in hdrs] == [(d["rtp"]["first_seq"] + i) & 0xFFFF for i in range(len(hdrs))]
        assert [h[3] for h in hdrs] == [d["rtp"]["first_ts"] + 160 * i for i in range(len(hdrs))]
        assert {h[4] for h in hdrs} == {int(d["rtp"]["ssrc"], 16)}


def stream_audio(packets: list, src: str) -> np.ndarray:
    mk = load_make_example()
    ip, port = src.split(":")
    payload = b"".join(p[5][12:] for p in packets if p[1] == ip and p[2] == int(port) and p[4] != 5060)
    return mk.mulaw_decode(np.frombuffer(payload, np.uint8))


def test_speech_exactly_in_the_turns(packets: list, expected: dict) -> None:
    for spk, d in expected["calls"][0]["speakers"].items():
        pcm = stream_audio(packets, d["rtp"]["src"]).astype(np.int32)
        mask = np.zeros(pcm.size, bool)
        for t in d["turns"]:
            a, b = round(t["start_in_stream"] * 8000), round(t["end_in_stream"] * 8000)
            mask[a:b] = True
            assert np.abs(pcm[a : a + 80]).max() >= 150 and np.abs(pcm[b - 80 : b]).max() >= 150, spk
        assert np.abs(pcm[~mask]).max() == 0, spk  # real silence-coded frames (0xFF) between turns
    # turns alternate: each speaker is silent while the other talks
    turns = sorted((t["start"], t["end"]) for d in expected["calls"][0]["speakers"].values() for t in d["turns"])
    assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(turns, turns[1:], strict=False))
    media = expected["calls"][0]["media_end"] - expected["calls"][0]["media_start"]
    assert 15 <= media <= 25.5


def test_mulaw_codec_matches_g711() -> None:
    mk = load_make_example()
    x = np.arange(-32768, 32768, dtype=np.int16)
    codes = mk.mulaw_encode(x)
    assert mk.MULAW_SILENCE == 0xFF
    # decode(encode(x)) stays within one quantisation step (8 near zero, 1024 in the top segment)
    err = np.abs(mk.mulaw_decode(codes).astype(np.int32) - x.astype(np.int32))
    assert err.max() <= 1024 and err[np.abs(x.astype(np.int32)) < 100].max() <= 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13; the reference where present
    assert codes.tobytes() == audioop.lin2ulaw(x.tobytes(), 2)
    c = np.arange(256, dtype=np.uint8)
    assert mk.mulaw_decode(c).tobytes() == audioop.ulaw2lin(c.tobytes(), 2)


needs_tts = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                               reason="espeak-ng and sox are needed to regenerate the example")


@needs_tts
def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    mk = load_make_example()
    out = tmp_path / "call-g711.pcap"
    mk.make(out)
    assert out.read_bytes() == PCAP.read_bytes()
    assert (tmp_path / "call-g711.expected.json").read_text() == EXPECTED.read_text()


@needs_tts
def test_multi_call_capture_is_deterministic(tmp_path: Path) -> None:
    mk = load_make_example()
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    exp = mk.make(a, calls=3)
    mk.make(b, calls=3)
    assert a.read_bytes() == b.read_bytes()
    assert [c["invite_time"] for c in exp["calls"]] == [0.0, 4.0, 8.0]
    assert len({c["call_id"] for c in exp["calls"]}) == 3
    # the calls overlap in time
    assert exp["calls"][1]["invite_time"] < exp["calls"][0]["bye_time"]


def tshark_stats(path: Path) -> str:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    res = subprocess.run(["tshark", "-r", str(path), "-q", "-z", "sip,stat", "-z", "rtp,streams"],
                         capture_output=True, text=True, timeout=60, check=True)
    return res.stdout


def rtp_rows(stats: str) -> list[list[str]]:
    return [line.split() for line in stats.splitlines() if "g711U" in line]


def test_tshark_sees_7_sip_messages_and_2_lossless_rtp_streams() -> None:
    stats = tshark_stats(PCAP)
    assert "Number of SIP messages: 7" in stats
    rows = rtp_rows(stats)
    assert len(rows) == 2
    for row in rows:
        assert row[row.index("g711U") + 2] == "0"  # "Lost" column: 0 (0.0%)


@needs_tts
def test_tshark_on_three_calls(tmp_path: Path) -> None:
    out = tmp_path / "calls3.pcap"
    load_make_example().make(out, calls=3)
    stats = tshark_stats(out)
    assert "Number of SIP messages: 21" in stats
    rows = rtp_rows(stats)
    assert len(rows) == 6 and all(r[r.index("g711U") + 2] == "0" for r in rows)
