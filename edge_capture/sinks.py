"""Record sinks without Kafka: the dry-run counter (optionally keeping records, for tests)."""
from __future__ import annotations

from typing import Any


class DryRunSink:
    """Counts what would be produced; with ``keep=True`` also keeps (key, record) pairs."""

    def __init__(self, rtp_partitions: int = 4, keep: bool = False) -> None:
        self.rtp_partitions = rtp_partitions
        self.keep = keep
        self.sip_records = 0
        self.rtp_records = 0
        self.sip: list[tuple[bytes, dict[str, Any]]] = []
        self.rtp: list[tuple[int, bytes, dict[str, Any]]] = []

    def send_sip(self, key: bytes, record: dict[str, Any]) -> None:
        self.sip_records += 1
        if self.keep:
            self.sip.append((key, record))

    def send_rtp(self, partition: int, key: bytes, record: dict[str, Any]) -> None:
        self.rtp_records += 1
        if self.keep:
            self.rtp.append((partition, key, record))

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def close(self, timeout_s: float = 30.0) -> int:
        return 0

    def queue_len(self) -> int:
        return 0
