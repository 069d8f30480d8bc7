"""Damaged and odd captures through ``spanscribe transcribe --no-stt``: a capture cut mid-packet still
yields its call with every whole packet's audio; garbage after the last record yields a one-line error
and a non-zero exit code, but the call read before it is written in full; an undecodable codec is noted
in the call document and gets no audio (hence no transcript), while the other speaker is unaffected."""
from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean(ox: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean-8k")
    r = ox.transcribe(ox.EXAMPLE_PCAP, out, "--no-stt", "--wav-rate", "8000")
    assert r.returncode == 0, r.stderr
    return out


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("spanscribe transcribe:")]


def _assert_audio_is_whole_packets(ox: ModuleType, pcap: Path, out: Path, expected: dict[str, Any]) -> None:
    """Each speaker's 8 kHz WAV = the independent decode of every whole RTP packet in ``pcap``."""
    _h, recs, _end = ox.read_pcap(pcap)
    rtp = ox.rtp_packets(recs)
    ce = expected["calls"][0]
    doc = ox.load_calls(out)[ce["call_id"]]
    streams = {s["speaker"]: s for s in doc["streams"]}
    for spk, sd in ce["speakers"].items():
        pk = rtp[ox.parse_tuple(sd["rtp"]["dst"])]
        assert streams[spk]["packets"] == len(pk) and streams[spk]["lost"] == 0
        ref = ox.reference_pcm(pk, doc["start_us"])
        rate, pcm = ox.read_wav(ox.wav_of(out, ce["call_id"], spk))
        assert rate == 8000 and pcm.shape == ref.shape and np.array_equal(pcm, ref), spk


@pytest.mark.parametrize("where", ["frame", "header"])
def test_truncated_capture_keeps_the_call_and_every_whole_packet(
        where: str, ox: ModuleType, example_expected: dict[str, Any], tmp_path: Path) -> None:
    data = ox.EXAMPLE_PCAP.read_bytes()
    _h, recs, _end = ox.read_pcap(ox.EXAMPLE_PCAP)
    # the start of record k (about 55% in, mid-call), then cut 9 bytes into its header or 70 into its frame
    k = int(len(recs) * 0.55)
    start = 24 + sum(16 + len(r.frame) for r in recs[:k])
    assert struct.unpack_from("<I", data, start + 8)[0] == len(recs[k].frame)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: start + (9 if where == "header" else 16 + 70)])
    out = tmp_path / "out"
    r = ox.transcribe(cut, out, "--no-stt", "--wav-rate", "8000")
    assert r.returncode == 0, r.stderr
    assert _error_lines(r.stderr) == []
    calls = ox.load_calls(out)
    assert list(calls) == [example_expected["calls"][0]["call_id"]]
    doc = calls[example_expected["calls"][0]["call_id"]]
    # no BYE in the file: the call ends (timeout) at the last whole packet, not "at the end of time"
    assert doc["end_reason"] == "timeout"
    assert doc["end_us"] - recs[k - 1].ts_us in (0, 1)
    _assert_audio_is_whole_packets(ox, cut, out, example_expected)


@pytest.mark.parametrize("garbage", [b"\xff" * 64, bytes(np.random.default_rng(7).integers(0, 256, 3000,
                                                                                          dtype=np.uint8))],
                         ids=["ff-bytes", "random-3000"])
def test_garbage_after_the_capture_is_one_error_line_and_the_call_is_kept(
        garbage: bytes, ox: ModuleType, clean: Path, example_expected: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pcap"
    bad.write_bytes(ox.EXAMPLE_PCAP.read_bytes() + garbage)
    out = tmp_path / "out"
    r = ox.transcribe(bad, out, "--no-stt", "--wav-rate", "8000")
    assert r.returncode == 1
    errs = _error_lines(r.stderr)
    assert len(errs) == 1 and str(bad) in errs[0] and "kept 1 call(s)" in errs[0], r.stderr
    assert "Traceback" not in r.stderr
    # everything before the garbage is kept: same documents and the same audio as the clean file
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())
    for p in clean.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_a_few_stray_bytes_after_the_capture_are_a_cut_record(ox: ModuleType, clean: Path, tmp_path: Path) -> None:
    """Fewer bytes than a record header at the end: a capture still being written, read quietly."""
    bad = tmp_path / "tail.pcap"
    bad.write_bytes(ox.EXAMPLE_PCAP.read_bytes() + b"\x00garbage\x01")
    out = tmp_path / "out"
    r = ox.transcribe(bad, out, "--no-stt", "--wav-rate", "8000")
    assert r.returncode == 0 and _error_lines(r.stderr) == [], r.stderr
    for p in clean.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_unknown_codec_is_noted_and_gets_no_audio(ox: ModuleType, example_expected: dict[str, Any],
                                                  tmp_path: Path) -> None:
    ce = example_expected["calls"][0]
    caller_rx = ox.parse_tuple(ce["speakers"]["caller"]["rtp"]["dst"])  # the caller's voice is sent here
    pcap = tmp_path / "g729.pcap"
    assert ox.unknown_codec(ox.EXAMPLE_PCAP, pcap, caller_rx) == ce["speakers"]["caller"]["rtp"]["packets"]
    out = tmp_path / "out"
    r = ox.transcribe(pcap, out, "--no-stt", "--wav-rate", "8000")
    assert r.returncode == 0, r.stderr
    doc = ox.load_calls(out)[ce["call_id"]]
    assert doc["notes"] == ["caller codec G729/8000 is not supported: not transcribed"]
    streams = {s["speaker"]: s for s in doc["streams"]}
    assert streams["caller"]["codec"] == "G729" and streams["caller"]["audio_s"] == 0.0
    assert not ox.wav_of(out, ce["call_id"], "caller").exists()
    # the callee is untouched: still the exact decode of its RTP
    _h, recs, _end = ox.read_pcap(pcap)
    ref = ox.reference_pcm(ox.rtp_packets(recs)[ox.parse_tuple(ce["speakers"]["callee"]["rtp"]["dst"])],
                           doc["start_us"])
    rate, pcm = ox.read_wav(ox.wav_of(out, ce["call_id"], "callee"))
    assert rate == 8000 and np.array_equal(pcm, ref)
