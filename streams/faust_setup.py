"""How the worker sets Faust up: Kafka credentials, and two fixes to faust-streaming's consumer behaviour
that it offers no setting for (each measured or seen in our tests; see the docstrings)."""
from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import faust


def faust_credentials(kafka: Mapping[str, str]) -> Any:
    """Map the librdkafka TLS/SASL passthrough settings to Faust (aiokafka) credentials, or None."""
    proto = (kafka.get("security.protocol") or "PLAINTEXT").upper()
    ctx = None
    if "SSL" in proto:
        ctx = ssl.create_default_context(cafile=kafka.get("ssl.ca.location"))
        if kafka.get("ssl.certificate.location"):
            ctx.load_cert_chain(kafka["ssl.certificate.location"], kafka.get("ssl.key.location"),
                                kafka.get("ssl.key.password"))
        if kafka.get("enable.ssl.certificate.verification", "true").lower() == "false":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    if proto.startswith("SASL"):
        return faust.SASLCredentials(username=kafka.get("sasl.username"), password=kafka.get("sasl.password"),
                                     mechanism=kafka.get("sasl.mechanism", "PLAIN"), ssl_context=ctx)
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def limit_fetch_wait(ms: int) -> None:
    """Make Faust's Kafka consumer wait at most ``ms`` for data in a fetch.

    faust-streaming creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` hard-coded. aiokafka
    leaves partitions that still hold fetched records out of the next fetch request, so that request often
    names only idle partitions (sip, bindings, changelogs) and the broker holds it the full 1.5 s while new
    RTP waits: measured at 200 calls in real time, capture-to-STT p50 1.28 s with a 1.5 s sawtooth in the
    receive delay; with 100 ms, p50 40 ms (docs/performance.md, "Worker"). Patched on the aiokafka module
    of this (worker) process only; idempotent.
    """
    import aiokafka

    current = aiokafka.AIOKafkaConsumer
    base = getattr(current, "_spanscribe_base", current)

    class _Consumer(base):  # type: ignore[misc, valid-type]
        _spanscribe_base = base

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = ms
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = _Consumer  # type: ignore[misc]


def keep_fetched_on_resume(app: faust.App) -> None:
    """Make ``app.flow_control.resume()`` a no-op while flow is already active.

    faust-streaming's ``Recovery.on_recovery_completed`` resumes the stream partitions, awaits the seek
    to the committed offsets, then calls ``flow_control.resume()``, which empties every stream queue.
    Flow was resumed already for the changelog recovery, so records fetched between the two (those
    produced while no worker ran) sit in the queues, are dropped there, and their re-fetch is dropped
    too (the consumer's read offset is past them): seen in the restart test as rtp offsets 44 -> 70
    (cf. faust-streaming#216). Clearing the queues only matters when flow was suspended (a rebalance
    revoked partitions), which this keeps.
    """
    fc = app.flow_control
    resume = fc.resume

    def _resume() -> None:
        if not fc.is_active():
            resume()

    setattr(fc, "resume", _resume)  # noqa: B010 - patch this app's instance only
