"""Start the reference STT server (``python -m spanscribe.stt.server``) as a child process.

Stdlib only, so callers (the demo, tests) load neither websockets nor the model by importing it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

READY = "ready on "  # the line the server prints on stdout once it listens: ``ready on ws://HOST:PORT``


def _tail(log_path: Path, lines: int = 5) -> str:
    text = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(line.strip() for line in text) or "(no output)"


def _ready_url(log_path: Path) -> str | None:
    for line in log_path.read_text(errors="replace").splitlines(keepends=True):
        if line.startswith(READY) and line.endswith("\n"):
            return line[len(READY):].strip()
    return None


@contextlib.contextmanager
def running_server(args: Sequence[str], *, log_path: Path | None = None, ready_timeout_s: float = 120.0,
                   stop_timeout_s: float = 15.0) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run the server with ``args`` (e.g. ``["--port", "0", "--engine", "echo"]``), its stdout and stderr
    to ``log_path`` (a temporary file, removed afterwards, when None); yield ``(proc, url)`` once it is
    ready. Raises RuntimeError (one line, with the log's last lines) if it exits or is not ready in time.
    On exit: SIGTERM to its process group, SIGKILL after ``stop_timeout_s``."""
    temp = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="stt-server-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "spanscribe.stt.server", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + ready_timeout_s
        while (url := _ready_url(log_path)) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"STT server exited with code {proc.returncode} before it was ready "
                                   f"(log {log_path}): {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"STT server not ready within {ready_timeout_s:.0f}s "
                                   f"(log {log_path}): {_tail(log_path)}")
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if temp:
            log_path.unlink(missing_ok=True)
