"""Records a hostile producer could write: ones that cost the reader more than their size."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any

import fastavro


def with_zero_byte_array(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` plus a field ``pad``: an array of nulls, defaulting to empty.

    A new field with a default is BACKWARD-compatible: a registry takes this as a
    new version of the subject, so only the reader can refuse it.
    """
    pad = {"name": "pad", "type": {"type": "array", "items": "null"}, "default": []}
    return {**schema, "fields": [*schema["fields"], pad]}


def spinning_record(
    schema_id: int, schema: Mapping[str, Any], record: Mapping[str, Any], count: int = 2**62
) -> bytes:
    """``record`` under ``with_zero_byte_array(schema)`` (id ``schema_id``) whose ``pad``
    block claims ``count`` items: a reader that believes it loops ``count`` times."""
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(dict(schema)), dict(record))
    fastavro.schemaless_writer(out, fastavro.parse_schema("long"), count)
    out.write(b"\x00")  # the block list's end, never reached
    return out.getvalue()
