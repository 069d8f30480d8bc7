"""Avro encode/decode for every spanscribe topic.

Two wire formats (chosen per codec instance):

* **Single-object encoding** (Avro spec, "Single object encoding"), the default: ``C3 01`` then the
  8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the
  Avro binary body. The reader finds the writer schema by fingerprint among the schemas it knows
  (the current ones in this folder plus any frozen earlier versions under ``schemas/history``) and
  resolves it to the current reader schema, so a field added with a default is read transparently.
* **Confluent Schema Registry** wire format when a registry URL is configured: magic byte ``00``, a
  4-byte big-endian schema id, then the body. Ids are registered/looked up over the registry's REST API.

A record that cannot be decoded raises :class:`DecodeError` naming the topic, partition and offset; the
caller counts it (``spanscribe_bad_records_total{topic,reason}``) and goes on.
"""
from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent
SCHEMA_NAMES = ("SipMessage", "RtpBatch", "MediaBinding", "TranscriptSegment", "CallTranscript", "CallEvent")

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
REGISTRY_MAGIC = 0

# Closed set of reasons, used as a metric label.
REASON_CORRUPT = "corrupt"
REASON_UNKNOWN_FINGERPRINT = "unknown_fingerprint"
REASON_UNKNOWN_SCHEMA_ID = "unknown_schema_id"
REASON_BAD_MAGIC = "bad_magic"
REASON_WRONG_SCHEMA = "wrong_schema"
REASONS = (REASON_CORRUPT, REASON_UNKNOWN_FINGERPRINT, REASON_UNKNOWN_SCHEMA_ID, REASON_BAD_MAGIC, REASON_WRONG_SCHEMA)


class DecodeError(Exception):
    """A record's bytes could not be decoded. ``str()`` names topic, partition and offset."""

    def __init__(self, reason: str, detail: str, topic: str | None = None,
                 partition: int | None = None, offset: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.topic or '?'}[{self.partition if self.partition is not None else '?'}]@" \
                f"{self.offset if self.offset is not None else '?'}"
        return f"cannot decode record at {where}: {self.reason}: {self.detail}"

    def at(self, topic: str | None, partition: int | None, offset: int | None) -> DecodeError:
        """Return the same error located at topic[partition]@offset."""
        return DecodeError(self.reason, self.detail, topic, partition, offset)


def load_schema(name: str, directory: Path | None = None) -> dict[str, Any]:
    """Load ``<directory>/<name>.avsc`` (default: this package) as a JSON dict (not yet parsed)."""
    path = (directory or SCHEMA_DIR) / f"{name}.avsc"
    with path.open("rb") as f:
        result: dict[str, Any] = json.load(f)
    return result


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, 8 bytes little-endian."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(dict(schema)))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


class SchemaRegistry(Protocol):
    """The two calls the codec needs from a Confluent-compatible schema registry."""

    def register(self, subject: str, schema: Mapping[str, Any]) -> int: ...

    def schema_by_id(self, schema_id: int) -> dict[str, Any]: ...


class HttpSchemaRegistry:
    """Minimal Confluent Schema Registry REST client (standard library only)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import urllib.request  # only here: importing the codec must not pull in sockets

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
            return json.loads(resp.read())

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        result = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})
        return int(result["id"])

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        result = self._call("GET", f"/schemas/ids/{schema_id}")
        parsed: dict[str, Any] = json.loads(result["schema"])
        return parsed


@dataclass(frozen=True)
class _Known:
    name: str
    parsed: Any


class AvroCodec:
    """Encode and decode the records of one schema (``SipMessage``, ``RtpBatch``, ...).

    ``encode(record) -> bytes`` and ``decode(data, topic=, partition=, offset=) -> dict``.
    Thread-safe for concurrent use (no mutable state after construction except registry id caches).
    """

    def __init__(self, name: str, registry: SchemaRegistry | None = None, subject: str | None = None,
                 extra_writer_schemas: list[Mapping[str, Any]] | None = None,
                 reader_schema: Mapping[str, Any] | None = None) -> None:
        if name not in SCHEMA_NAMES and reader_schema is None:
            raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
        self.name = name
        self.schema_json = dict(reader_schema) if reader_schema is not None else load_schema(name)
        self.parsed = fastavro.parse_schema(self.schema_json)
        self.fingerprint = schema_fingerprint(self.schema_json)
        self._writers: dict[bytes, Any] = {self.fingerprint: self.parsed}
        history = SCHEMA_DIR / "history"
        if history.is_dir():
            for p in sorted(history.glob(f"{name}.v*.avsc")):
                self.add_writer_schema(json.loads(p.read_text()))
        for s in extra_writer_schemas or ():
            self.add_writer_schema(s)
        self.registry = registry
        self.subject = subject or f"spanscribe.{name}"
        self._registry_id: int | None = None
        self._registry_schemas: dict[int, Any] = {}

    def add_writer_schema(self, schema: Mapping[str, Any]) -> bytes:
        """Teach the reader an older (or other) writer schema; returns its fingerprint."""
        fp = schema_fingerprint(schema)
        self._writers[fp] = fastavro.parse_schema(dict(schema))
        return fp

    # -- encode ---------------------------------------------------------------------------------
    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Serialise ``record`` with the current schema. Raises ValueError naming the bad field."""
        buf = io.BytesIO()
        if self.registry is not None:
            if self._registry_id is None:
                self._registry_id = self.registry.register(self.subject, self.schema_json)
            buf.write(struct.pack(">bI", REGISTRY_MAGIC, self._registry_id))
        else:
            buf.write(SINGLE_OBJECT_MAGIC)
            buf.write(self.fingerprint)
        try:
            fastavro.schemaless_writer(buf, self.parsed, dict(record))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
            raise ValueError(f"{self.name}: record does not match schema: {exc}") from exc
        return buf.getvalue()

    # -- decode ---------------------------------------------------------------------------------
    def decode(self, data: bytes | None, topic: str | None = None, partition: int | None = None,
               offset: int | None = None) -> dict[str, Any]:
        """Deserialise one record to a dict resolved to the current reader schema.

        Raises:
            DecodeError: wrong magic byte, unknown fingerprint / schema id, or a corrupt body;
                the message names topic[partition]@offset.
        """
        try:
            return self._decode(data)
        except DecodeError as exc:
            raise exc.at(topic, partition, offset) from None

    def _decode(self, data: bytes | None) -> dict[str, Any]:
        if not data:
            raise DecodeError(REASON_BAD_MAGIC, "empty value")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError(REASON_CORRUPT, f"truncated single-object header ({len(data)} bytes)")
            fp = bytes(data[2:10])
            writer = self._writers.get(fp)
            if writer is None:
                raise DecodeError(REASON_UNKNOWN_FINGERPRINT,
                                  f"writer schema fingerprint {fp.hex()} is not a known {self.name} schema")
            body = data[10:]
        elif data[0] == REGISTRY_MAGIC and len(data) >= 5:
            (schema_id,) = struct.unpack(">I", data[1:5])
            writer = self._registry_writer(schema_id)
            body = data[5:]
        else:
            raise DecodeError(REASON_BAD_MAGIC, f"unexpected magic byte 0x{data[0]:02x}")
        bio = io.BytesIO(body)
        try:
            # Same schema: no resolution step (it is several times slower than a plain read).
            record = fastavro.schemaless_reader(bio, writer, None if writer is self.parsed else self.parsed)
        except Exception as exc:  # fastavro raises many types on garbage (EOFError, ValueError, ...)
            raise DecodeError(REASON_CORRUPT, f"{type(exc).__name__}: {exc}") from None
        if bio.tell() != len(body):
            raise DecodeError(REASON_CORRUPT, f"{len(body) - bio.tell()} trailing bytes after the record")
        if not isinstance(record, dict):
            raise DecodeError(REASON_WRONG_SCHEMA, "decoded value is not a record")
        return record

    def _registry_writer(self, schema_id: int) -> Any:
        cached = self._registry_schemas.get(schema_id)
        if cached is not None:
            return cached
        if self.registry is None:
            raise DecodeError(REASON_UNKNOWN_SCHEMA_ID,
                              f"registry-framed record (schema id {schema_id}) but no registry configured")
        try:
            parsed = fastavro.parse_schema(self.registry.schema_by_id(schema_id))
        except Exception as exc:
            raise DecodeError(REASON_UNKNOWN_SCHEMA_ID, f"schema id {schema_id}: {exc}") from None
        self._registry_schemas[schema_id] = parsed
        return parsed


def codecs(registry_url: str | None = None) -> dict[str, AvroCodec]:
    """One codec per schema name, sharing a registry client when a URL is given."""
    registry = HttpSchemaRegistry(registry_url) if registry_url else None
    return {name: AvroCodec(name, registry=registry) for name in SCHEMA_NAMES}
