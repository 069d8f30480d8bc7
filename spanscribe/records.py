"""The one place consumers turn Kafka messages into records: decode, and on a bad record say what is
wrong in one line (topic[partition]@offset), count it, forward the raw bytes to the dead-letter topic
when a producer is given, and go on."""
from __future__ import annotations

import logging
from typing import Any, Protocol

from schemas.codec import AvroCodec, DecodeError
from spanscribe.metrics import BAD_RECORDS

log = logging.getLogger(__name__)


class _Message(Protocol):
    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


class _Producer(Protocol):
    def produce(self, topic: str, value: bytes | None = ..., key: bytes | None = ...,
                headers: Any = ...) -> None: ...


def decode_message(codec: AvroCodec, msg: _Message, dlq_topic: str | None = None,
                   producer: _Producer | None = None) -> dict[str, Any] | None:
    """The decoded record, or None after logging, counting and dead-lettering a bad one."""
    try:
        return codec.decode(msg.value(), topic=msg.topic(), partition=msg.partition(), offset=msg.offset())
    except DecodeError as exc:
        BAD_RECORDS.labels(topic=msg.topic() or "?", reason=exc.reason).inc()
        log.warning("%s", exc)
        if producer is not None and dlq_topic:
            producer.produce(dlq_topic, value=msg.value(), key=msg.key(), headers=[
                ("spanscribe.error", str(exc).encode()), ("spanscribe.reason", exc.reason.encode()),
                ("spanscribe.source", f"{msg.topic()}[{msg.partition()}]@{msg.offset()}".encode())])
        return None
