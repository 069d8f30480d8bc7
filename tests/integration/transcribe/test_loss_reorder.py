"""5% RTP loss and 5% reordering (packets late by 1-3 packets), rewritten into the capture with dpkt
(deterministic seeds), through ``spanscribe transcribe --no-stt``.

What the pipeline promises here is exact: the jitter buffer puts every reordered packet back in its
place and a lost 20 ms packet becomes 20 ms of silence at its RTP-timestamp position, so the 8 kHz audio
equals the clean decode with exactly the lost packets zeroed, sample for sample; the 16 kHz WAVs keep
their length (± one packet, a lost last packet cannot be known) and every turn onset (± 40 ms).
The effect on the transcript is measured in ``test_stt.py``.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SEED = 20261125  # chosen before any measurement (the date); test_stt.py uses the same
LOSS = REORDER = 0.05


@pytest.fixture(scope="module", params=["example", "calls3"])
def lossy(request: pytest.FixtureRequest, ox: ModuleType, example_expected: dict[str, Any],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pcap, expected = ox.capture_case(request, example_expected)
    tmp = tmp_path_factory.mktemp(f"lossy-{request.param}")
    bad = tmp / "lossy.pcap"
    deg = ox.degrade(pcap, bad, LOSS, REORDER, SEED)
    runs = {}
    for name, src, extra in (("lossy8", bad, ["--wav-rate", "8000"]), ("lossy16", bad, []), ("clean16", pcap, [])):
        runs[name] = tmp / name
        r = ox.transcribe(src, runs[name], "--no-stt", *extra)
        assert r.returncode == 0, r.stderr
    _h, recs, _end = ox.read_pcap(pcap)
    return {"pcap": pcap, "expected": expected, "deg": deg, "clean_rtp": ox.rtp_packets(recs), **runs}


def test_the_rewrite_did_what_it_says(lossy: dict[str, Any], ox: ModuleType) -> None:
    deg = lossy["deg"]
    n = deg.rtp_total
    dropped = sum(len(v) for v in deg.dropped.values())
    delayed = sum(len(v) for v in deg.delayed.values())
    assert 0.035 * n < dropped < 0.065 * n and 0.035 * n < delayed < 0.065 * n
    assert {k for _s, k in sum(deg.delayed.values(), [])} == {1, 2, 3}
    _h, recs, _end = ox.read_pcap(Path(lossy["lossy8"]).parent / "lossy.pcap")
    got = ox.rtp_packets(recs)
    for key, pk in got.items():  # really out of order on the wire
        seqs = [p.seq for p in pk]
        assert sum(b < a for a, b in zip(seqs[:-1], seqs[1:], strict=True)) >= len(deg.delayed[key]) // 2


def _concealed(ref: np.ndarray, lost_starts: list[int], rate: int = 8000, max_ms: int = 60) -> np.ndarray:
    """The expected audio: each run of lost 20 ms packets starts with the last 10 ms before it repeated,
    fading linearly to zero over at most 60 ms, then silence (streams/core/codecs/plc.py's spec, written
    out again here)."""
    out = ref.copy()
    lost = sorted(lost_starts)
    runs: list[tuple[int, int]] = []
    for i0 in lost:
        if runs and runs[-1][1] == i0:
            runs[-1] = (runs[-1][0], i0 + 160)
        else:
            runs.append((i0, i0 + 160))
    for a, b in runs:
        if a < 80:
            continue
        period = ref[a - 80:a].astype(np.float64)
        m = min(b - a, rate * max_ms // 1000)
        fade = np.linspace(1.0, 0.0, m + 1)[1:]
        out[a:a + m] = np.rint(np.resize(period, m) * fade).astype(np.int16)
    return out


def test_lossy_audio_is_the_clean_decode_with_lost_packets_concealed(lossy: dict[str, Any], ox: ModuleType) -> None:
    calls = ox.load_calls(lossy["lossy8"])
    for ce in lossy["expected"]["calls"]:
        doc = calls[ce["call_id"]]
        streams = {s["speaker"]: s for s in doc["streams"]}
        for spk, sd in ce["speakers"].items():
            key = ox.parse_tuple(sd["rtp"]["dst"])
            clean_pk = lossy["clean_rtp"][key]
            lost = lossy["deg"].dropped[key]
            ref = ox.reference_pcm(clean_pk, doc["start_us"], frozenset(lost))
            # where the lost packets sit in the reference (it places every packet at its RTP timestamp)
            first = min(clean_pk, key=lambda q: q.cap_us)
            anchor = (first.cap_us - doc["start_us"]) * 8000 // 1_000_000
            lost_set = set(lost)
            # a loss after the last packet received is not a gap: the stream just ends there
            starts = [anchor + ((p.ts - first.ts) & 0xFFFFFFFF) for p in clean_pk if p.seq in lost_set]
            starts = [i for i in starts if i + 160 <= ref.shape[0]]
            ref = _concealed(ref, starts)
            rate, pcm = ox.read_wav(ox.wav_of(lossy["lossy8"], ce["call_id"], spk))
            assert rate == 8000 and pcm.shape == ref.shape, (ce["call_id"], spk, pcm.shape, ref.shape)
            diff = np.flatnonzero(pcm != ref)
            assert diff.size == 0, f"{ce['call_id']} {spk}: {diff.size} samples differ, packets {np.unique(diff // 160)[:8]}"
            # the stream statistics count it: every loss before the last packet received, no duplicates
            last_seq = max(p.seq for p in clean_pk if p.seq not in set(lost))
            st = streams[spk]
            assert st["packets"] == len(clean_pk) - len(lost)
            assert st["lost"] == sum(1 for s in lost if s < last_seq) and st["duplicates"] == 0
            assert st["jitter_ms"] > 0  # the late packets are seen as jitter


def test_16k_wavs_keep_length_and_turn_onsets(lossy: dict[str, Any], ox: ModuleType) -> None:
    for ce in lossy["expected"]["calls"]:
        for spk, sd in ce["speakers"].items():
            _r, clean = ox.read_wav(ox.wav_of(lossy["clean16"], ce["call_id"], spk))
            _r, bad = ox.read_wav(ox.wav_of(lossy["lossy16"], ce["call_id"], spk))
            assert abs(bad.shape[0] - clean.shape[0]) <= 320, (ce["call_id"], spk)
            on_clean, on_bad = ox.onsets(clean, 16000), ox.onsets(bad, 16000)
            assert len(on_clean) == len(on_bad) == len(sd["turns"]), (ce["call_id"], spk, on_clean, on_bad)
            worst = max(abs(a - b) for a, b in zip(on_clean, on_bad, strict=True))
            assert worst <= 0.040, f"{ce['call_id']} {spk}: onset off by {worst * 1000:.0f} ms"


def test_reordering_alone_changes_no_sample(ox: ModuleType, tmp_path: Path) -> None:
    clean8, reord8 = tmp_path / "clean8", tmp_path / "reord8"
    deg = ox.degrade(ox.EXAMPLE_PCAP, tmp_path / "reordered.pcap", 0.0, 0.10, SEED)
    assert sum(len(v) for v in deg.delayed.values()) > 150
    for src, out in ((ox.EXAMPLE_PCAP, clean8), (tmp_path / "reordered.pcap", reord8)):
        r = ox.transcribe(src, out, "--no-stt", "--wav-rate", "8000")
        assert r.returncode == 0, r.stderr
    wavs = sorted(p.name for p in clean8.glob("*.wav"))
    assert len(wavs) == 2 and wavs == sorted(p.name for p in reord8.glob("*.wav"))
    for name in wavs:
        assert (reord8 / name).read_bytes() == (clean8 / name).read_bytes(), name
