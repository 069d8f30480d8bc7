"""Prometheus metrics shared by every process (low-cardinality labels only: never a Call-ID).

All counters live in one registry so `--metrics-port` exposes everything the process counted.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

BAD_INPUT = Counter(
    "spanscribe_bad_input_total",
    "Inputs rejected as malformed, by pipeline stage and reason (closed enum).",
    ["stage", "reason"],
    registry=REGISTRY,
)
BAD_RECORDS = Counter(
    "spanscribe_bad_records_total",
    "Kafka records that could not be decoded (corrupt Avro, unknown fingerprint, bad magic byte).",
    ["topic", "reason"],
    registry=REGISTRY,
)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    """Return the process-wide counter ``name``, creating it on first use (idempotent)."""
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - prometheus has no public lookup
    if existing is None:
        existing = REGISTRY._names_to_collectors.get(name.removesuffix("_total"))  # noqa: SLF001
    if existing is not None:
        return existing  # type: ignore[return-value]
    return Counter(name, doc, list(labels), registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    """Return the process-wide gauge ``name``, creating it on first use (idempotent)."""
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001
    if existing is not None:
        return existing  # type: ignore[return-value]
    return Gauge(name, doc, list(labels), registry=REGISTRY)


def histogram(name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None) -> Histogram:
    """Return the process-wide histogram ``name``, creating it on first use (idempotent)."""
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001
    if existing is not None:
        return existing  # type: ignore[return-value]
    if buckets is None:
        return Histogram(name, doc, list(labels), registry=REGISTRY)
    return Histogram(name, doc, list(labels), registry=REGISTRY, buckets=buckets)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose the registry on http://addr:port/metrics (no-op when port is 0)."""
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)
