"""Where spanscribe keeps downloaded and generated files (Kafka jars, the speech model, broker data)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """``$SPANSCRIBE_CACHE``, else ``<checkout>/.cache`` when running from a source checkout,
    else ``~/.cache/spanscribe``. Created if missing."""
    env = os.environ.get("SPANSCRIBE_CACHE")
    if env:
        d = Path(env)
    elif (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / ".git").exists():
        d = REPO_ROOT / ".cache"
    else:
        d = Path.home() / ".cache" / "spanscribe"
    d.mkdir(parents=True, exist_ok=True)
    return d
