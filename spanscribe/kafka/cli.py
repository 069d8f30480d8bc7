"""``spanscribe kafka start|stop|status``: the local development broker."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from spanscribe.kafka.local import KafkaError, LocalKafka
from spanscribe.paths import cache_dir


def broker_for(port: int, data_dir: str | None = None) -> LocalKafka:
    d = Path(data_dir) if data_dir else cache_dir() / "kafka" / f"data-{port}"
    return LocalKafka(d, port=port)


def run(args: argparse.Namespace) -> int:
    k = broker_for(args.port, args.data_dir)
    try:
        if args.action == "start":
            t0 = time.monotonic()
            was = k.running()
            bootstrap = k.start()
            how = "already running" if was else f"started in {time.monotonic() - t0:.1f}s"
            print(f"kafka {how}: bootstrap {bootstrap} (data {k.data_dir}, pid {k.pid()})", file=sys.stderr)
            print(bootstrap)
        elif args.action == "stop":
            stopped = k.stop()
            print("kafka stopped" if stopped else "kafka was not running", file=sys.stderr)
        else:
            pid = k.pid()
            if pid is None:
                print(f"kafka not running (data {k.data_dir})")
                return 1
            print(f"kafka running: bootstrap {k.bootstrap} pid {pid} (data {k.data_dir})")
    except KafkaError as exc:
        print(f"spanscribe kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
