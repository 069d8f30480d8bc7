"""Shared pytest fixtures.

- ``captures_dir`` / ``capture``: the shared real captures, read in place from ``../shared/captures``
  (or ``$SPANSCRIBE_CAPTURES``). Tests that need them skip with a clear reason where the folder is
  absent (a user's clone); in CI (``CI=true``) a missing folder is an error, not a skip.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _captures_dir() -> Path:
    env = os.environ.get("SPANSCRIBE_CAPTURES")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "captures"


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    d = _captures_dir()
    if not d.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared captures folder {d} is missing in CI")
        pytest.skip(f"shared captures folder {d} not present (set SPANSCRIBE_CAPTURES to run these tests)")
    return d


@pytest.fixture(scope="session")
def capture(captures_dir: Path) -> Callable[[str], Path]:
    """Return a function mapping a capture file name to its path (skips if that file is absent)."""

    def _get(name: str) -> Path:
        p = captures_dir / name
        if not p.is_file():
            pytest.skip(f"capture {name} not in {captures_dir}")
        return p

    return _get
