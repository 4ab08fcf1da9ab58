"""Avro bodies of the contract's record shapes, written without fastavro's union search.

fastavro writes a value of a union (``["null", "string"]``) by validating it against
each branch in turn; for the contract's events, four such fields made that search most of
an encode, and encoding a third of the relay's CPU per event. ``compile_writer`` turns a
parsed record schema of primitive fields, nullable primitives and the ``date`` and
tz-aware ``timestamp-micros``/``-millis`` logical types into one function per field. Any
other shape, or any value outside the narrow cases written here (a naive datetime, a bool
for an int, a number out of range, a missing field with no default), is written by
fastavro itself, so the bytes and the errors are fastavro's whatever the record.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import fastavro

BodyWriter = Callable[[Mapping[str, Any]], bytes]
"""A record's Avro body, without the wire format's header."""

Write = Callable[[Any, bytearray], None]
"""Appends one value's Avro encoding; raises ``_Unsupported`` to hand the record to fastavro."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAYS = date(1970, 1, 1).toordinal()
_INT = (-(2**31), 2**31 - 1)
_LONG = (-(2**63), 2**63 - 1)


class _Unsupported(Exception):
    """This value is not one of the cases written here."""


def _varint(n: int, out: bytearray) -> None:
    n = (n << 1) ^ (n >> 63)  # zigzag
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _integer(bounds: tuple[int, int]) -> Write:
    low, high = bounds

    def write(value: Any, out: bytearray) -> None:
        if type(value) is not int or not low <= value <= high:
            raise _Unsupported
        _varint(value, out)

    return write


def _string(value: Any, out: bytearray) -> None:
    if type(value) is not str:
        raise _Unsupported
    data = value.encode()
    _varint(len(data), out)
    out += data


def _timestamp(per_second: int) -> Write:
    def write(value: Any, out: bytearray) -> None:
        if type(value) is not datetime or value.tzinfo is None:
            raise _Unsupported
        delta = value - _EPOCH
        ticks = (delta.days * 86_400 + delta.seconds) * per_second
        _varint(ticks + delta.microseconds * per_second // 1_000_000, out)

    return write


def _date(value: Any, out: bytearray) -> None:
    if type(value) is not date:
        raise _Unsupported
    _varint(value.toordinal() - _EPOCH_DAYS, out)


_PRIMITIVES: dict[tuple[str, str | None], Write] = {
    ("int", None): _integer(_INT),
    ("long", None): _integer(_LONG),
    ("string", None): _string,
    ("long", "timestamp-micros"): _timestamp(1_000_000),
    ("long", "timestamp-millis"): _timestamp(1_000),
    ("int", "date"): _date,
}


def _primitive(schema: Any) -> Write | None:
    if isinstance(schema, str):
        return _PRIMITIVES.get((schema, None))
    if isinstance(schema, dict) and isinstance(schema.get("type"), str):
        return _PRIMITIVES.get((schema["type"], schema.get("logicalType")))
    return None


def _nullable(branches: list[Any]) -> Write | None:
    if len(branches) != 2 or "null" not in branches:
        return None
    null_index = branches.index("null")
    inner = _primitive(branches[1 - null_index])
    if inner is None:
        return None
    null_tag, value_tag = bytearray(), bytearray()
    _varint(null_index, null_tag)
    _varint(1 - null_index, value_tag)

    def write(value: Any, out: bytearray) -> None:
        if value is None:
            out += null_tag
        else:
            out += value_tag
            inner(value, out)

    return write


def _field_writer(schema: Any) -> Write | None:
    return _nullable(schema) if isinstance(schema, list) else _primitive(schema)


_MISSING = object()


def compile_writer(schema: dict[str, Any]) -> BodyWriter:
    """A function writing a record of ``schema`` (parsed by fastavro) as fastavro would."""

    def by_fastavro(record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, dict(record))
        return out.getvalue()

    fields: list[tuple[str, Any, Write]] = []
    for field in schema.get("fields", ()) if schema.get("type") == "record" else ():
        writer = _field_writer(field["type"])
        if writer is None:
            return by_fastavro
        fields.append((field["name"], field.get("default", _MISSING), writer))
    if not fields:
        return by_fastavro

    def write(record: Mapping[str, Any]) -> bytes:
        out = bytearray()
        try:
            for name, default, writer in fields:
                value = record.get(name, default)
                if value is _MISSING:
                    raise _Unsupported
                writer(value, out)
        except _Unsupported:
            return by_fastavro(record)
        return bytes(out)

    return write
