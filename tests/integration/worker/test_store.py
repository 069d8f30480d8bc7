"""The worker on the RocksDB table store (rocksdict): a worker SIGKILLed mid-call and restarted with the
same data directory and application id opens its tables from disk (the killed process's RocksDB LOCK
files are left behind; the kernel released their locks) and completes the call. See conftest.py."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import PARTITIONS, Pipeline  # noqa: E402
from test_worker import sigkill_and_restart  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("rocksdict") is None,
                                 reason="rocksdict is not installed (no wheel for this platform)")]

WORKER_STORE = "rocksdb"
TABLES = ("dialogs", "bindings", "assembly", "stt-checkpoints")


def test_rocksdb_sigkill_and_restart(pipeline: Pipeline) -> None:
    log = pipeline.worker.log()
    assert "table store rocksdb (rocksdict " in log, log[-3000:]
    data = Path(pipeline.worker.argv[pipeline.worker.argv.index("--data-dir") + 1]) / "v1" / "tables"
    took = sigkill_and_restart(pipeline, "rocks-kill")
    assert took < 60, took
    dbs = {p.name for p in data.glob("*.db")}
    assert {f"{t}-{i}.db" for t in TABLES for i in range(PARTITIONS)} <= dbs, sorted(dbs)
    assert all((data / f"{t}-{i}.db" / "LOCK").exists() for t in TABLES for i in range(PARTITIONS))
    restarted = pipeline.worker.log().rsplit("===== start ", 1)[-1]
    assert "is locked" not in restarted and "Traceback" not in restarted, restarted[-4000:]
    assert "table store rocksdb" in restarted
    proc = pipeline.worker.proc
    assert proc is not None
    status = Path(f"/proc/{proc.pid}/status")
    if status.exists():  # Linux
        print("restarted worker (RocksDB):", *[ln for ln in status.read_text().splitlines() if ln.startswith("VmRSS")])
