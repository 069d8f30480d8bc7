"""Model cache assembly, with small fake parts (the real 145 MB join is checked under -m stt)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from spanscribe.stt import model as m


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    d1, d2 = tmp_path / "p1" / "data", tmp_path / "p2" / "data"
    d1.mkdir(parents=True)
    d2.mkdir(parents=True)
    (d1 / "model.bin.part1").write_bytes(b"A" * 600)
    (d2 / "model.bin.part2").write_bytes(b"B" * 400)
    for name in m.SIDE_FILES:
        (d1 / name).write_text(f"{name} contents")
    files = {m.PART_DISTS[0]: d1 / "model.bin.part1", m.PART_DISTS[1]: d2 / "model.bin.part2"}
    monkeypatch.setattr(m, "_dist_file", lambda dist, rel: files[dist])
    monkeypatch.setattr(m, "MODEL_BIN_BYTES", 1000)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return files


def test_assembles_once_and_is_idempotent(tmp_path: Path, fake_parts: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    d = m.ensure_model(cache)
    assert d == cache / "whisper-base"
    assert (d / "model.bin").read_bytes() == b"A" * 600 + b"B" * 400
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    mtime = (d / "model.bin").stat().st_mtime_ns
    for p in fake_parts.values():
        p.unlink()  # a complete cache never touches the parts again
    assert m.ensure_model(cache) == d
    assert (d / "model.bin").stat().st_mtime_ns == mtime


def test_truncated_model_is_rebuilt_and_no_temp_files_remain(tmp_path: Path, fake_parts: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    d = m.ensure_model(cache)
    (d / "model.bin").write_bytes(b"A" * 10)  # e.g. an old interrupted copy under the final name
    assert not m.is_complete(d)
    m.ensure_model(cache)
    assert (d / "model.bin").stat().st_size == 1000
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_wrong_total_size_is_refused(tmp_path: Path, fake_parts: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "MODEL_BIN_BYTES", 999)
    with pytest.raises(m.ModelUnavailable, match="add up to 1000 bytes"):
        m.ensure_model(tmp_path / "cache")
    assert not (tmp_path / "cache" / "whisper-base" / "model.bin").exists()


def test_missing_distribution_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "PART_DISTS", ("spanscribe-no-such-dist-x", "spanscribe-no-such-dist-y"))
    with pytest.raises(m.ModelUnavailable, match="pip install"):
        m.ensure_model(tmp_path / "empty")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANSCRIBE_CACHE", str(tmp_path / "x"))
    assert m.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SPANSCRIBE_CACHE")
    root = Path(m.__file__).resolve().parents[2]
    assert m.default_cache_dir() == root / ".cache"  # running from this checkout


def test_real_wheels_are_found() -> None:
    """The installed part wheels hold the files ensure_model needs, adding up to the right size."""
    try:
        parts = [m._dist_file(d, f) for d, f in zip(m.PART_DISTS, m.PART_FILES, strict=True)]
    except m.ModelUnavailable as exc:
        pytest.skip(str(exc))
    assert sum(p.stat().st_size for p in parts) == m.MODEL_BIN_BYTES
    assert all((parts[0].parent / n).is_file() for n in m.SIDE_FILES)
