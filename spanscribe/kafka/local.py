"""Fetch the Apache Kafka jars from Maven Central and run a single-node KRaft broker on 127.0.0.1.

``fetch_jars()`` runs ``mvn dependency:copy-dependencies`` on the small ``pom.xml`` beside this file into
``<cache>/kafka/lib`` once (a marker file records the version, so a second run downloads nothing).
``LocalKafka(data_dir, port).start()`` writes ``server.properties``, formats KRaft storage on first use,
starts ``kafka.Kafka`` in the background (pid file in the data dir), and returns once the broker answers a
metadata request. ``stop()`` sends SIGTERM and waits for a clean exit; a later ``start()`` on the same data
dir reuses the stored cluster id and logs.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from spanscribe.paths import cache_dir

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent


class KafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def lib_dir() -> Path:
    return cache_dir() / "kafka" / "lib"


def fetch_jars(quiet: bool = True) -> Path:
    """Download the broker jars once; returns the lib directory. Raises KafkaError with Maven's output."""
    lib = lib_dir()
    marker = lib / f".complete-{KAFKA_VERSION}"
    if marker.is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError("Maven (mvn) not found on PATH: it is needed once to fetch the Kafka jars")
    lib.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-Dmaven.repo.local=" + str(cache_dir() / "m2"), "-f", str(HERE / "pom.xml"),
           "dependency:copy-dependencies", "-DoutputDirectory=" + str(lib)]
    if quiet:
        cmd.insert(1, "-q")
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, lib)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KafkaError(f"mvn failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    if not any(lib.glob("kafka_2.13-*.jar")):
        raise KafkaError(f"mvn succeeded but no kafka_2.13 jar in {lib}")
    marker.write_text(KAFKA_VERSION + "\n")
    return lib


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalKafka:
    """One single-node KRaft broker+controller on 127.0.0.1:``port`` with its state in ``data_dir``."""

    data_dir: Path
    port: int = 9092
    controller_port: int | None = None
    heap_mb: int = 512

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.data_dir = Path(self.data_dir).resolve()
        if self.controller_port is None:
            self.controller_port = self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.out"

    def _properties(self) -> str:
        logs = self.data_dir / "logs"
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={logs}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "",
        ])

    def pid(self) -> int | None:
        """PID of the running broker from the pid file, or None if it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:  # a recycled pid is not our broker
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if b"kafka.Kafka" in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout_s: float = 90.0) -> str:
        """Start (or find running) and wait until the broker answers metadata; returns the bootstrap."""
        if self.running():
            self._wait_ready(timeout_s)
            return self.bootstrap
        if _port_open(self.port):
            raise KafkaError(f"port {self.port} on 127.0.0.1 is already in use by another process")
        java = shutil.which("java")
        if java is None:
            raise KafkaError("java not found on PATH (Java 17 is needed to run the broker)")
        lib = fetch_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(self._properties())
        cp = f"{lib}/*"
        if not (self.data_dir / "logs" / "meta.properties").is_file():
            cluster_id = self._cluster_id()
            proc = subprocess.run([java, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                   "-c", str(props), "--ignore-formatted"],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise KafkaError(f"formatting KRaft storage failed: {(proc.stdout + proc.stderr)[-1500:]}")
        out = self.log_file.open("ab")
        try:
            proc2 = subprocess.Popen(
                [java, f"-Xms{self.heap_mb}m", f"-Xmx{self.heap_mb}m",
                 f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                 f"-Dkafka.logs.dir={self.data_dir / 'applogs'}",
                 "-cp", cp, "kafka.Kafka", str(props)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        self._proc = proc2
        self.pid_file.write_text(f"{proc2.pid}\n")
        try:
            self._wait_ready(timeout_s, proc2)
        except KafkaError:
            self.stop()
            raise
        return self.bootstrap

    def _cluster_id(self) -> str:
        f = self.data_dir / "cluster.id"
        if f.is_file():
            return f.read_text().strip()
        # Kafka cluster ids are 16 random bytes, base64url without padding (22 chars).
        import base64

        cid = "-"
        while cid.startswith("-"):  # the format tool's option parser takes a leading '-' for an option
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        f.write_text(cid + "\n")
        return cid

    def _wait_ready(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0,
                             "logger": logging.getLogger("spanscribe.kafka.admin")})
        last = ""
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise KafkaError(f"broker exited with code {proc.returncode}; see {self.log_file}: "
                                 f"{self._tail()}")
            if _port_open(self.port):
                try:
                    md = admin.list_topics(timeout=2)
                    if md.brokers:
                        return
                except Exception as exc:  # KafkaException while the broker boots
                    last = str(exc)
            time.sleep(0.3)
        raise KafkaError(f"broker on {self.bootstrap} did not answer metadata within {timeout_s:.0f}s "
                         f"({last}); see {self.log_file}")

    def _tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the broker and wait for it to exit (SIGKILL after ``timeout_s``). True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            log.warning("broker pid %d did not stop within %.0fs: killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        if self._proc is not None:  # our own child: reap it (no zombie, no ResourceWarning)
            self._proc.wait(timeout=5)
            self._proc = None
        return True


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap if it is our child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
