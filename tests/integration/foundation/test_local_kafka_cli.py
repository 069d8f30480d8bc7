"""`spanscribe kafka start|status|stop` on a fresh data dir, twice (second start reuses the data dir)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spanscribe.kafka.local import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spanscribe", "kafka", *args], capture_output=True, text=True,
                          timeout=180)


def test_start_status_stop_restart(tmp_path: Path) -> None:
    port = free_port()
    d = str(tmp_path / "k")
    try:
        first = _cli("start", "--port", str(port), "--data-dir", d)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"127.0.0.1:{port}"
        status = _cli("status", "--port", str(port), "--data-dir", d)
        assert status.returncode == 0 and "running" in status.stdout
        again = _cli("start", "--port", str(port), "--data-dir", d)
        assert "already running" in again.stderr
        assert _cli("stop", "--port", str(port), "--data-dir", d).returncode == 0
        assert _cli("status", "--port", str(port), "--data-dir", d).returncode == 1
        restart = _cli("start", "--port", str(port), "--data-dir", d)
        assert restart.returncode == 0, restart.stderr
        assert (Path(d) / "logs" / "meta.properties").is_file()
    finally:
        _cli("stop", "--port", str(port), "--data-dir", d)
