"""Real parts for the worker tests: the session's KRaft broker, a reference STT server subprocess (echo
engine) on a fixed port that a test may kill and restart, and a ``spanscribe worker`` subprocess (Faust)
that a test may SIGKILL and restart under the same application id and data directory.

The worker's table store is ``memory`` unless the environment says ``SPANSCRIBE_TEST_STORE=rocksdb``
(or ``auto``); a test module may pin it with ``WORKER_STORE``.

One set per test module (each test uses fresh Call-IDs). Records are produced with confluent-kafka the
way the edge produces them (SIP keyed ``site/Call-ID`` with the murmur2 partitioner, RTP batches to an
explicit partition).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # callgen (no __init__.py: importlib mode)

from callgen import Call, rtp_batches  # noqa: E402

PARTITIONS = 4
STORE = os.environ.get("SPANSCRIBE_TEST_STORE", "memory")


def _free_port() -> int:
    from spanscribe.kafka.local import free_port

    return free_port()


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=REPO, env=self.env, start_new_session=True)
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Pipeline:
    """Handles on the running parts plus helpers to produce records and read results."""

    settings: dict[str, Any]
    stt: Proc
    worker: Proc
    stt_port: int
    web_port: int
    producer: Any = None
    codecs: dict[str, Any] = field(default_factory=dict)

    # -- lifecycle --------------------------------------------------------------------------------
    def start_stt(self, timeout_s: float = 60.0) -> None:
        self.stt.start()
        deadline = time.monotonic() + timeout_s
        marker = f"ready on ws://127.0.0.1:{self.stt_port}"
        while self.stt.log().count(marker) < self.stt.starts:
            if not self.stt.alive():
                raise RuntimeError("STT server exited:\n" + self.stt.log()[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError("STT server not ready:\n" + self.stt.log()[-3000:])
            time.sleep(0.1)

    def start_worker(self, timeout_s: float = 120.0) -> float:
        """Start the worker and wait for /readyz; returns the seconds it took."""
        t0 = time.monotonic()
        self.worker.start()
        url = f"http://127.0.0.1:{self.web_port}/readyz"
        while time.monotonic() - t0 < timeout_s:
            if not self.worker.alive():
                raise RuntimeError("worker exited:\n" + self.worker.log()[-4000:])
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("worker not ready:\n" + self.worker.log()[-4000:])

    # -- producing ----------------------------------------------------------------------------------
    def topic(self, name: str) -> str:
        from spanscribe.config import topic

        return topic(self.settings, name)

    def send_sip(self, records: list[tuple[int, dict[str, Any]]]) -> None:
        for _, rec in records:
            self.producer.produce(self.topic("sip"), key=f"{rec['site']}/{rec['call_id']}".encode(),
                                  value=self.codecs["SipMessage"].encode(rec))
        self.flush()

    def send_rtp(self, batches: list[tuple[int, int, bytes, dict[str, Any]]]) -> None:
        for _, part, key, rec in batches:
            self.producer.produce(self.topic("rtp"), key=key, value=self.codecs["RtpBatch"].encode(rec),
                                  partition=part)
        self.flush()

    def send_raw(self, topic: str, key: bytes, value: bytes, partition: int | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        kw: dict[str, Any] = {"headers": headers} if headers else {}
        if partition is not None:
            kw["partition"] = partition
        self.producer.produce(self.topic(topic), key=key, value=value, **kw)
        self.flush()

    def flush(self) -> None:
        left = self.producer.flush(30)
        assert left == 0, f"{left} records not delivered"

    def send_call(self, call: Call, from_s: float | None = None, to_s: float | None = None) -> None:
        """The call's records in capture order (SIP and RTP interleaved by time); with ``from_s`` /
        ``to_s`` only those with capture time in [media start + from_s, media start + to_s)."""
        self.send_calls([call], from_s, to_s)

    def send_calls(self, calls: list[Call], from_s: float | None = None, to_s: float | None = None) -> None:
        """Several calls' records merged in capture order (concurrent calls); ``from_s``/``to_s`` are
        relative to the first call's media start."""
        items: list[tuple[int, int, tuple[str, Any]]] = []
        for call in calls:
            items += [(ts, 0, ("sip", r)) for ts, r in call.sip()]
        # one edge: the calls' packets bundled together, one RtpBatch per partition per flush
        packets = sorted((p for call in calls for p in call.packets()), key=lambda p: p[0])
        items += [(b[0], 1, ("rtp", b)) for b in rtp_batches(packets, PARTITIONS, site=calls[0].site)]
        items.sort(key=lambda x: (x[0], x[1]))
        lo = -1 if from_s is None else calls[0].media0_us + int(from_s * 1e6)
        hi = 1 << 62 if to_s is None else calls[0].media0_us + int(to_s * 1e6)
        for ts, _, (kind, obj) in items:
            if not lo <= ts < hi:
                continue
            if kind == "sip":
                self.producer.produce(self.topic("sip"), key=f"{obj['site']}/{obj['call_id']}".encode(),
                                      value=self.codecs["SipMessage"].encode(obj))
            else:
                _, part, key, rec = obj
                self.producer.produce(self.topic("rtp"), key=key, value=self.codecs["RtpBatch"].encode(rec),
                                      partition=part)
        self.flush()

    def wait_finals(self, call_id: str, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` final segments of the call are in the transcripts topic."""
        def done(rs: list[Any]) -> bool:
            return sum(1 for _, r in rs if r and r["call_id"] == call_id and r["is_final"]) >= count
        recs = self.read("transcripts", "TranscriptSegment", until=done, timeout_s=timeout_s)
        got = [r for _, r in recs if r and r["call_id"] == call_id and r["is_final"]]
        assert len(got) >= count, (got, self.worker.log()[-3000:])
        return got

    # -- reading ------------------------------------------------------------------------------------
    def read(self, name: str, codec: str | None, until: Any = None, timeout_s: float = 60.0,
             min_wait_s: float = 0.0) -> list[tuple[Any, dict[str, Any] | None]]:
        """All records of a topic from the beginning: (message, decoded or None). Stops when
        ``until(records)`` is true (after ``min_wait_s``) or at the timeout."""
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": self.settings["bootstrap_servers"],
                      "group.id": f"it-{uuid.uuid4().hex[:10]}", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([self.topic(name)])
        out: list[tuple[Any, dict[str, Any] | None]] = []
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < timeout_s:
                for m in c.consume(500, timeout=0.3):
                    if m.error():
                        continue
                    try:
                        rec = self.codecs[codec].decode(m.value()) if codec else None
                    except Exception:  # noqa: BLE001 - the DLQ test's corrupt records
                        rec = None
                    out.append((m, rec))
                if until is not None and time.monotonic() - t0 >= min_wait_s and until(out):
                    break
        finally:
            c.close()
        return out

    def wait_call(self, call_id: str, timeout_s: float = 90.0, min_wait_s: float = 0.0) -> dict[str, Any]:
        """The latest CallTranscript of ``call_id`` (fails at the timeout)."""
        recs = self.read("calls", "CallTranscript",
                         until=lambda rs: any(r and r["call_id"] == call_id for _, r in rs),
                         timeout_s=timeout_s, min_wait_s=min_wait_s)
        docs = [r for _, r in recs if r and r["call_id"] == call_id]
        if not docs:
            raise AssertionError(f"no CallTranscript for {call_id} within {timeout_s}s\nworker log tail:\n"
                                 + self.worker.log()[-4000:])
        return docs[-1]

    def calls_of(self, call_id: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        recs = self.read("calls", "CallTranscript", timeout_s=timeout_s)
        return [r for _, r in recs if r and r["call_id"] == call_id]

    def segments(self, call_id: str, timeout_s: float = 5.0) -> list[tuple[Any, dict[str, Any]]]:
        recs = self.read("transcripts", "TranscriptSegment", timeout_s=timeout_s)
        return [(m, r) for m, r in recs if r and r["call_id"] == call_id]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """A test module may set ``WORKER_ENV`` (dict): extra environment of its worker (SPANSCRIBE_*), and
    ``WORKER_STORE`` (str): its table store (else ``SPANSCRIBE_TEST_STORE``, else memory)."""
    import tempfile

    from confluent_kafka import Producer

    from schemas.codec import AvroCodec
    from spanscribe.config import load
    from spanscribe.topics import create_topics

    work = Path(tempfile.mkdtemp(prefix="spanscribe-worker-it-"))  # kept: logs to read after a failure
    run = uuid.uuid4().hex[:8]
    settings = load(environ={}, overrides={"bootstrap_servers": kafka_bootstrap, "topic_prefix": f"wit-{run}",
                                            "partitions": PARTITIONS})
    create_topics(settings)
    stt_port, web_port = _free_port(), _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               # a restarted worker must not wait the default 60 s for the killed member's session to lapse
               SPANSCRIBE_WORKER__SESSION_TIMEOUT_S="10")
    env.update(getattr(request.module, "WORKER_ENV", {}))
    env.pop("SPANSCRIBE_CONFIG", None)
    store = str(getattr(request.module, "WORKER_STORE", STORE))
    stt = Proc("stt", [sys.executable, "-m", "spanscribe.stt.server", "--port", str(stt_port), "--engine", "echo",
                       "--max-sessions", "32"], work / "stt.log", env)
    worker = Proc("worker", [sys.executable, "-m", "spanscribe", "worker", "--bootstrap-servers", kafka_bootstrap,
                             "--topic-prefix", settings["topic_prefix"], "--partitions", str(PARTITIONS),
                             "--app-id", f"wit-{run}", "--web-port", str(web_port),
                             "--stt-url", f"ws://127.0.0.1:{stt_port}", "--store", store,
                             "--data-dir", str(work / "data")], work / "worker.log", env)
    p = Pipeline(settings, stt, worker, stt_port, web_port)
    p.producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random",
                           "linger.ms": 5, "acks": "all"})
    p.codecs = {n: AvroCodec(n) for n in ("SipMessage", "RtpBatch", "MediaBinding", "TranscriptSegment",
                                          "CallEvent", "CallTranscript")}
    try:
        p.start_stt()
        p.start_worker()
        yield p
    finally:
        worker.kill(signal.SIGTERM)
        stt.kill(signal.SIGTERM)
        print(f"logs in {work}")
