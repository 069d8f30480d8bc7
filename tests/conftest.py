"""Shared pytest fixtures.

- ``captures_dir`` / ``capture``: the shared real captures, read in place from ``../shared/captures``
  (or ``$SPANSCRIBE_CAPTURES``). Tests that need them skip with a clear reason where the folder is
  absent (a user's clone); in CI (``CI=true``) a missing folder is an error, not a skip.
- ``load_module``: import a helper file (not a package module) by its path, once per session.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


def load_module_from_path(path: Path, name: str) -> ModuleType:
    """``path`` imported as module ``name`` (registered in ``sys.modules``, so loaded only once)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader, f"cannot import {path}"
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="session")
def load_module() -> Callable[[Path, str], ModuleType]:
    """``load_module(path, name)``: a helper file as a module (see ``load_module_from_path``)."""
    return load_module_from_path


# ---------------------------------------------------------------------------------------------
# Real Kafka: one KRaft broker per test session, started from the project's jars on a free port
# (or the broker named by KAFKA_BOOTSTRAP). A broker that will not start fails the run: no skip.
# ---------------------------------------------------------------------------------------------
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = os.environ.get("KAFKA_BOOTSTRAP")
    if env:
        yield env
        return
    from spanscribe.kafka.local import LocalKafka, free_port

    port = free_port()
    controller = free_port()
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), port=port, controller_port=controller)
    broker.start(timeout_s=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: ``new_topic(partitions=1, **config)`` creates a fresh uuid-named topic and returns its name."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def _make(partitions: int = 1, prefix: str = "t", **config: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=dict(config))])[name]
        fut.result(timeout=30)
        return name

    return _make


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> dict[str, Any]:
    """Settings with a fresh topic prefix and every spanscribe topic created (4 partitions)."""
    from spanscribe.config import load
    from spanscribe.topics import create_topics

    settings = load(environ={}, overrides={"bootstrap_servers": kafka_bootstrap,
                                            "topic_prefix": f"ss-{uuid.uuid4().hex[:10]}", "partitions": 4})
    create_topics(settings)
    return settings


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Read ``expected`` messages from ``topic`` (from the beginning) or fail after ``timeout_s``."""
    import time

    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                out.append(m)
    finally:
        c.close()
    return out


@pytest.fixture
def consume() -> Callable[..., list[Any]]:
    """``consume(bootstrap, topic, expected, timeout_s=30)`` -> list of confluent_kafka Messages."""
    return consume_all
