"""The Avro wire contract between edge and centre: schemas (``*.avsc``) and the codec."""
from schemas.codec import (
    SCHEMA_NAMES,
    AvroCodec,
    DecodeError,
    load_schema,
)

__all__ = ["SCHEMA_NAMES", "AvroCodec", "DecodeError", "load_schema"]
