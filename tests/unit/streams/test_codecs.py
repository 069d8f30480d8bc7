from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from streams_helpers import rtp_packets

from streams.core.codecs import (
    ALAW_TABLE,
    REGISTRY,
    ULAW_TABLE,
    G722Decoder,
    L16Decoder,
    Resampler,
    decoder_for,
    resample,
)

ALL_CODES = bytes(range(256))


def _sox_decode(tmp_path: Path, enc: str) -> np.ndarray:
    src = tmp_path / "in.raw"
    dst = tmp_path / "out.raw"
    src.write_bytes(ALL_CODES)
    subprocess.run(["sox", "-t", "raw", "-e", enc, "-r", "8000", "-c", "1", str(src),
                    "-t", "raw", "-e", "signed", "-b", "16", "-L", str(dst)], check=True)
    return np.frombuffer(dst.read_bytes(), dtype="<i2")


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (reference for G.711)")
@pytest.mark.parametrize(("enc", "table", "name"), [("u-law", ULAW_TABLE, "PCMU"), ("a-law", ALAW_TABLE, "PCMA")])
def test_g711_bit_exact_vs_sox(tmp_path: Path, enc: str, table: np.ndarray, name: str) -> None:
    ref = _sox_decode(tmp_path, enc)
    assert ref.shape == (256,)
    np.testing.assert_array_equal(table, ref)
    dec = decoder_for(name, 8000, 1)
    assert dec is not None
    np.testing.assert_array_equal(dec.decode(ALL_CODES), ref)


def test_registry_and_unknown() -> None:
    assert set(REGISTRY) >= {"PCMU", "PCMA", "G722", "L16"}
    assert decoder_for("pcmu", 8000) is not None
    assert decoder_for("opus", 48000, 2) is None
    assert decoder_for("G729", 8000) is None
    g = decoder_for("G722", 8000)
    assert g is not None and g.sample_rate == 16000 and g.rtp_clock_rate == 8000


def test_l16_big_endian() -> None:
    dec = L16Decoder(16000, 1)
    out = dec.decode(b"\x01\x02\xff\xfe\x80\x00")
    assert out.dtype == np.int16
    assert out.tolist() == [0x0102, -2, -32768]
    stereo = L16Decoder(8000, 2).decode(b"\x00\x10\x00\x20")
    assert stereo.tolist() == [0x18]


def _g722_payload(capture) -> bytes:  # type: ignore[no-untyped-def]
    pkts = [p for p in rtp_packets(capture("sip-rtp-g722.pcap")) if p.pt == 9]
    pkts.sort(key=lambda p: p.seq)
    return b"".join(p.payload for p in pkts)


@pytest.mark.capture
def test_g722_vs_ffmpeg(capture, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed: it is the G.722 reference decoder (apt-get install ffmpeg)")
    data = _g722_payload(capture)
    assert len(data) > 10000
    src = tmp_path / "x.g722"
    src.write_bytes(data)
    out = tmp_path / "ref.raw"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "g722", "-i", str(src), "-f", "s16le", str(out)],
                   check=True)
    ref = np.frombuffer(out.read_bytes(), dtype="<i2")
    ours = G722Decoder().decode(data)
    assert ours.shape == ref.shape == (2 * len(data),)
    maxdiff = int(np.abs(ours.astype(np.int32) - ref.astype(np.int32)).max())
    assert maxdiff == 0, f"G.722 differs from ffmpeg by up to {maxdiff}"
    assert int(np.abs(ref).max()) > 1000  # real speech, not silence


def test_g722_random_codes_vs_ffmpeg(tmp_path: Path) -> None:
    """Random code words drive the predictors into their limits and saturations."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed: it is the G.722 reference decoder (apt-get install ffmpeg)")
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=24000, dtype=np.uint8).tobytes()
    data += bytes([0x00] * 2000 + [0xFF] * 2000 + [0x3F, 0xC0] * 1000)  # constant extremes
    src = tmp_path / "r.g722"
    src.write_bytes(data)
    out = tmp_path / "r.raw"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "g722", "-i", str(src), "-f", "s16le", str(out)],
                   check=True)
    ref = np.frombuffer(out.read_bytes(), dtype="<i2")
    ours = G722Decoder().decode(data)
    assert ours.shape == ref.shape
    assert int(np.abs(ours.astype(np.int32) - ref.astype(np.int32)).max()) == 0


@pytest.mark.capture
def test_g722_chunked_and_snapshot_equal_whole(capture) -> None:  # type: ignore[no-untyped-def]
    data = _g722_payload(capture)[:16000]
    whole = G722Decoder().decode(data)
    d = G722Decoder()
    parts = []
    for i in range(0, len(data), 160):
        if i == 8000:  # a worker restart mid-stream: resume from the JSON-able snapshot
            import json
            state = json.loads(json.dumps(d.snapshot()))
            d = G722Decoder()
            d.restore(state)
        parts.append(d.decode(data[i:i + 160]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def _tone(freq: float, rate: int, n: int, amp: float = 10000) -> np.ndarray:
    t = np.arange(n) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_resample_8k_to_16k_tone() -> None:
    x = _tone(1000, 8000, 8000)
    y = resample(x, 8000, 16000)
    assert y.dtype == np.int16 and y.shape == (16000,)
    # the FIR delays by (taps - 1) / 2 = 31.5 samples at 16 kHz (linear phase): compare to a delayed tone
    t = (np.arange(16000) - 31.5) / 16000
    ref = 10000 * np.sin(2 * np.pi * 1000 * t)
    err = np.abs(y[100:-100].astype(float) - ref[100:-100]).max()
    assert err < 60  # < 0.6 % of amplitude
    # a 7 kHz tone would alias at 8 kHz input; a 3.4 kHz tone passes almost unattenuated
    y2 = resample(_tone(3400, 8000, 8000), 8000, 16000)
    assert 9500 < np.abs(y2[1000:-1000]).max() < 10500


def test_resample_stopband_16k_to_8k() -> None:
    y = resample(_tone(6000, 16000, 16000), 16000, 8000)  # above the 4 kHz Nyquist: must be removed
    assert y.shape == (8000,)
    assert np.abs(y[200:-200]).max() < 200


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (48000, 16000), (44100, 16000), (16000, 16000)])
def test_resampler_streaming_equals_whole(src: int, dst: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-20000, 20000, size=src, dtype=np.int16)
    whole = Resampler(src, dst).process(x)
    r = Resampler(src, dst)
    parts = []
    pos = 0
    for n in [1, 7, 160, 333, 800, 2, 5000]:
        parts.append(r.process(x[pos:pos + n]))
        pos += n
        if pos == 168:
            st = r.snapshot()
            r = Resampler(src, dst)
            r.restore(st)
    parts.append(r.process(x[pos:]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert abs(len(whole) - len(x) * dst / src) <= 1
