"""The Avro contract: every schema parses, every field is documented, records round-trip, bad bytes
give one clear error, and a reader on today's schema reads data written with v1 (frozen copy)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import SCHEMA_DIR, SCHEMA_NAMES, AvroCodec, DecodeError, load_schema, schema_fingerprint
from schemas.examples import example_records
from schemas.rtp_columns import ColumnError, unpack_stream

V1_DIR = Path(__file__).resolve().parents[2] / "schemas_v1"


def _fields_without_doc(schema: Any, path: str = "") -> list[str]:
    missing: list[str] = []
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            if not schema.get("doc"):
                missing.append(f"{path}{schema['name']} (record)")
            for f in schema["fields"]:
                if not f.get("doc"):
                    missing.append(f"{path}{f['name']}")
                missing += _fields_without_doc(f["type"], f"{path}{f['name']}.")
        elif schema.get("type") == "array":
            missing += _fields_without_doc(schema["items"], path)
    elif isinstance(schema, list):
        for s in schema:
            missing += _fields_without_doc(s, path)
    return missing


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_parses_and_every_field_has_doc(name: str) -> None:
    schema = load_schema(name)
    fastavro.parse_schema(schema)
    assert _fields_without_doc(schema) == []


def test_every_avsc_file_is_a_known_schema() -> None:
    assert sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")) == sorted(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_round_trip_single_object_encoding(name: str) -> None:
    codec = AvroCodec(name)
    rec = example_records()[name]
    data = codec.encode(rec)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(load_schema(name))
    assert codec.decode(data) == rec


def test_rtp_columns_round_trip_through_avro() -> None:
    codec = AvroCodec("RtpBatch")
    rec = codec.decode(codec.encode(example_records()["RtpBatch"]))
    cols = unpack_stream(rec["streams"][0])
    assert cols.count == 3
    assert cols.seq.tolist() == [65534, 65535, 0]
    assert cols.rtp_ts.tolist() == [4294967136, 0, 160]
    assert (cols.capture_us - cols.capture_us[0]).tolist() == [0, 20_000, 40_000]
    assert cols.marker.tolist() == [True, False, False]
    assert cols.payload_type.tolist() == [0, 0, 0]
    assert cols.payload(1) == b"\x7f" * 160
    assert cols.seq.dtype == np.dtype("<u2")


def test_rtp_columns_reject_inconsistent_lengths() -> None:
    entry = dict(example_records()["RtpBatch"]["streams"][0])
    entry["seq"] = entry["seq"][:-1]
    with pytest.raises(ColumnError, match="column seq"):
        unpack_stream(entry)
    entry = dict(example_records()["RtpBatch"]["streams"][0])
    entry["payloads"] = entry["payloads"][:-1]
    with pytest.raises(ColumnError, match="payload lengths"):
        unpack_stream(entry)


class FakeRegistry:
    def __init__(self) -> None:
        self.by_id: dict[int, dict[str, Any]] = {}

    def register(self, subject: str, schema: Any) -> int:
        sid = 100 + len(self.by_id)
        self.by_id[sid] = json.loads(json.dumps(schema))
        return sid

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        return self.by_id[schema_id]


def test_registry_wire_format() -> None:
    reg = FakeRegistry()
    codec = AvroCodec("MediaBinding", registry=reg)
    rec = example_records()["MediaBinding"]
    data = codec.encode(rec)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 100
    reader = AvroCodec("MediaBinding", registry=reg)
    assert reader.decode(data) == rec
    # a registry-framed record without a registry configured is an error, not a crash
    with pytest.raises(DecodeError, match="unknown_schema_id"):
        AvroCodec("MediaBinding").decode(data, topic="b", partition=0, offset=1)


def test_bad_input_errors_name_topic_partition_offset() -> None:
    codec = AvroCodec("SipMessage")
    good = codec.encode(example_records()["SipMessage"])
    cases = {
        "corrupt": good[:10] + b"\xff" * 7,
        "unknown_fingerprint": b"\xc3\x01" + b"\x00" * 8 + good[10:],
        "bad_magic": b"\x07" + good[1:],
    }
    for reason, data in cases.items():
        with pytest.raises(DecodeError) as info:
            codec.decode(data, topic="spanscribe.sip", partition=3, offset=42)
        assert info.value.reason == reason
        assert "spanscribe.sip[3]@42" in str(info.value)
        assert "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for name in ("SipMessage", "RtpBatch"):
        codec = AvroCodec(name)
        try:
            codec.decode(b"\xc3\x01" + codec.fingerprint + data)
        except DecodeError:
            pass
        try:
            codec.decode(data)
        except DecodeError:
            pass


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_evolution_v1_data_read_by_current_and_by_next_version(name: str) -> None:
    v1 = json.loads((V1_DIR / f"{name}.avsc").read_text())
    rec = example_records()[name]
    v1_writer = AvroCodec(name, reader_schema=v1)
    data = v1_writer.encode(rec)
    # today's reader knows v1 (it is either identical or registered as history)
    current = AvroCodec(name, extra_writer_schemas=[v1])
    assert current.decode(data) == rec
    # the next version adds a field with a default: it still reads v1 data, filling the default
    v2 = copy.deepcopy(load_schema(name))
    v2["fields"].append({"name": "added_in_v2", "type": ["null", "string"], "default": None,
                         "doc": "A field added after v1."})
    v2_reader = AvroCodec(name, reader_schema=v2, extra_writer_schemas=[v1])
    got = v2_reader.decode(data)
    assert got["added_in_v2"] is None
    assert {k: got[k] for k in rec} == rec
    # and a v1 reader reads v2 data once it learns the v2 writer schema (forward compatible)
    v2_data = AvroCodec(name, reader_schema=v2).encode({**rec, "added_in_v2": "x"})
    v1_reader = AvroCodec(name, reader_schema=v1, extra_writer_schemas=[v2])
    assert v1_reader.decode(v2_data) == rec
