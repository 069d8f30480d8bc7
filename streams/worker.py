"""``spanscribe worker``: run one Faust worker of the central pipeline."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from spanscribe.paths import cache_dir

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    import faust

    from streams.app import build_app
    from streams.tablestore import resolve

    settings = args.settings
    worker = settings.get("worker") or {}
    data_dir = worker.get("data_dir") or str(cache_dir() / "worker" / args.app_id)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    app = build_app(settings, app_id=args.app_id, data_dir=data_dir, web_port=int(worker.get("web_port", 6066)))
    log.info("worker %s: bootstrap %s, prefix %s, %d partitions, STT %s (max %d sessions)",
             args.app_id, settings["bootstrap_servers"], settings["topic_prefix"], settings["partitions"],
             ",".join(settings["stt"]["urls"]), settings["stt"]["max_sessions"])
    log.info("worker %s: table store %s, state in %s", args.app_id,
             resolve(str(worker.get("store") or "auto"))[1], data_dir)
    level = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}[args.log_level]
    w = faust.Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    # Faust's start-up spinner (made when the level is warn or above) sets the ROOT logger to DEBUG for
    # its own handler, so every library's debug call builds a record and runs the filters: with
    # --log-level warning, websockets' per-frame debug logging cost ~5% of the worker's CPU (py-spy,
    # bench/worker_bench.py --profile). No spinner: the root logger keeps the level asked for.
    w.spinner = None
    os.environ.setdefault("FAUST_LOOP", "asyncio")
    w.execute_from_commandline()
    return 0
