"""``spanscribe demo`` (README's first command): the real pipeline, end to end, on one machine.

1. start the local Kafka broker (KRaft, from the Apache jars) and create this run's topics;
2. start the reference STT server (faster-whisper, offline) and one stream worker (Faust);
3. run the edge capturer on the example capture (``examples/call-g711.pcap``);
4. wait for the ``CallTranscript`` on the calls topic and print both speakers with times;
5. stop everything, also on Ctrl-C.

Each run uses its own topic prefix and application id, so runs never see each other's records.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spanscribe.kafka.cli import broker_for
from spanscribe.kafka.local import free_port
from spanscribe.paths import REPO_ROOT
from spanscribe.stt.launch import running_server

EXAMPLE = REPO_ROOT / "examples" / "call-g711.pcap"


def say(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _process(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process with output to ``log_path``; stop it (its process group) on exit."""
    log = log_path.open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}; see {log_path}:\n"
                               + log_path.read_text(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"worker not ready at {url} within {timeout_s:.0f}s; see {log_path}")


def wait_for_calls(settings: dict[str, Any], expected: int, timeout_s: float) -> list[dict[str, Any]]:
    """Consume the calls topic from the beginning until ``expected`` CallTranscripts arrived."""
    from confluent_kafka import Consumer

    from schemas.codec import AvroCodec
    from spanscribe.config import kafka_config, topic
    from spanscribe.records import decode_message

    codec = AvroCodec("CallTranscript")
    c = Consumer(kafka_config(settings, **{"group.id": f"demo-tail-{uuid.uuid4().hex[:8]}",
                                           "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    c.subscribe([topic(settings, "calls")])
    calls: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(calls) < expected and time.monotonic() < deadline:
            for m in c.consume(10, timeout=0.5):
                if m.error():
                    continue
                rec = decode_message(codec, m)
                if rec is not None:
                    calls[rec["call_id"]] = rec
    finally:
        c.close()
    return list(calls.values())


def run(args: argparse.Namespace) -> int:
    from spanscribe.tail import format_call
    from spanscribe.topics import create_topics

    t0 = time.monotonic()
    pcap = Path(args.pcap) if args.pcap else EXAMPLE
    if not pcap.is_file():
        say(f"capture {pcap} not found")
        return 2
    run_id = uuid.uuid4().hex[:8]
    work = Path(os.environ.get("SPANSCRIBE_DEMO_DIR", "/tmp")) / f"spanscribe-demo-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    broker = broker_for(args.port)
    say(f"starting the local Kafka broker on 127.0.0.1:{args.port} (first run fetches the jars) ...")
    bootstrap = broker.start()
    prefix = f"demo-{run_id}"
    settings = dict(args.settings, bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=2)
    spanscribe = [sys.executable, "-m", "spanscribe"]
    common = ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix]
    try:
        create_topics(settings)
        say(f"topics {prefix}.* created; starting the reference STT server and a worker (logs in {work}) ...")
        stt_port = args.stt_port or free_port()
        web_port = free_port()
        with running_server(["--port", str(stt_port)], log_path=work / "stt.log", ready_timeout_s=180,
                            stop_timeout_s=20), \
             _process(spanscribe + ["worker", *common, "--partitions", "2", "--app-id", f"demo-{run_id}",
                                     "--web-port", str(web_port), "--stt-url", f"ws://127.0.0.1:{stt_port}",
                                     "--data-dir", str(work / "worker"), "--store", "memory"],
                      work / "worker.log",
                      env=dict(os.environ, SPANSCRIBE_SPEAKERS__AGENT_EXTENSIONS=args.agent_extension)) as worker:
            _wait_http(f"http://127.0.0.1:{web_port}/readyz", 180, worker, work / "worker.log")
            say(f"worker ready; running the edge capturer on {pcap.name} ...")
            edge = subprocess.run(spanscribe + ["edge", "--pcap", str(pcap), "--site", "demo", *common,
                                                "--summary-json", str(work / "edge-summary.json")],
                                  capture_output=True, text=True, timeout=300)
            (work / "edge.log").write_text(edge.stdout + edge.stderr)
            if edge.returncode != 0:
                say(f"edge capturer failed ({edge.returncode}): {edge.stderr[-1500:]}")
                return 1
            say("edge done; waiting for the transcript (speech recognition runs on this CPU) ...")
            calls = wait_for_calls(settings, 1, args.timeout_s)
        if not calls:
            say(f"no CallTranscript within {args.timeout_s:.0f}s; logs in {work}")
            return 1
        for call in calls:
            print(format_call(call))
        say(f"done in {time.monotonic() - t0:.0f}s")
        return 0
    except KeyboardInterrupt:
        say("interrupted: stopping")
        return 130
    except RuntimeError as exc:
        say(str(exc))
        return 1
    finally:
        if not args.keep_running:
            broker.stop()
