"""streams.core is pure: importing it pulls in no Faust, Kafka, asyncio, sockets or websockets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_imports_nothing_impure() -> None:
    code = (
        "import sys\n"
        "import streams.core, streams.core.dialog, streams.core.media, streams.core.jitter, streams.core.binding,"
        " streams.core.assembler, streams.core.stt_protocol, streams.core.codecs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " {'faust', 'aiokafka', 'confluent_kafka', 'kafka', 'asyncio', 'socket', 'websockets', 'mode'})\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_no_clock_calls_in_source() -> None:
    src = "\n".join(p.read_text() for p in (REPO / "streams" / "core").rglob("*.py"))
    for needle in ("time.time(", "time.monotonic(", "datetime.now(", "perf_counter(", "import time"):
        assert needle not in src
