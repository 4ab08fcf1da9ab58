"""What keeps one hostile record from costing more than its own size to decode.

Avro arrays are written in blocks, each led by an item count. fastavro reads (or,
for a field the reader lacks, skips) that many items, and an item that encodes to
no bytes at all (``null``, a record of no fields, a zero-size ``fixed``) lets a
count of 2^62 spin on one 20-byte record. Every other item costs at least one
byte, so once a writer schema has no array of such items the reader runs out of
bytes after at most ``len(record)`` items; capping the record's size caps the work.
Map entries always cost a byte (their key's length), so maps are bounded already.
"""

from __future__ import annotations

from typing import Any

MAX_RECORD_BYTES = 64 * 1024
"""The largest command value decoded. The contract's largest command is under 1 KiB
(three identifiers of at most 255 bytes, a quantity and a date); the rest is room
for fields added by later versions."""


def unbounded_array(schema: Any) -> str | None:
    """The path of an array in ``schema`` whose items can encode to zero bytes; None if none."""
    return _walk(schema, {}, "")


def _walk(schema: Any, named: dict[str, bool], path: str) -> str | None:
    if isinstance(schema, list):
        for branch in schema:
            found = _walk(branch, named, path)
            if found:
                return found
        return None
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "array":
        if _empty(schema["items"], named):
            return f"{path or '<record>'}[]"
        return _walk(schema["items"], named, path + "[]")
    if kind == "map":
        return _walk(schema["values"], named, path + "{}")
    if kind == "record":
        _empty(schema, named)  # registers its name (and those of the types it defines)
        for f in schema.get("fields", []):
            found = _walk(f["type"], named, f"{path}.{f['name']}" if path else f["name"])
            if found:
                return found
    return None


def _empty(schema: Any, named: dict[str, bool]) -> bool:
    """Whether a value of ``schema`` can be written in zero bytes."""
    if isinstance(schema, str):
        # A named type seen before, or a primitive: only null is free.
        return named.get(schema, schema == "null")
    if isinstance(schema, list):
        return False  # a union writes its branch index
    kind = schema.get("type")
    if kind == "fixed":
        empty = bool(schema.get("size") == 0)
    elif kind == "record":
        name = schema.get("name", "")
        named.setdefault(name, False)  # a type inside itself can only hold it behind a union
        empty = all(_empty(f["type"], named) for f in schema.get("fields", []))
    else:
        # arrays, maps and enums write at least a count or an index
        return (
            isinstance(kind, str) and kind not in ("array", "map", "enum") and _empty(kind, named)
        )
    if "name" in schema:
        named[schema["name"]] = empty
    return empty
