"""The compiled Avro writer writes every contract record byte for byte as fastavro does."""

from __future__ import annotations

import io
import random
import string
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import fastavro
import pytest
from fastavro import schemaless_writer as reference_writer

from allocation.adapters.avro_writer import compile_writer
from allocation.adapters.contract import load_schema

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

RECORDS = sorted(
    p.name.removesuffix(".avsc")
    for p in resources.files("allocation.schemas").iterdir()
    if p.name.endswith(".avsc")
)


def by_fastavro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    reference_writer(out, schema, dict(record))
    return out.getvalue()


def outcome(write: Callable[[], bytes]) -> bytes | type[Exception]:
    """The bytes written, or the type of the error raised."""
    try:
        return write()
    except Exception as exc:
        return type(exc)


def value_for(rng: random.Random, field_type: Any) -> Any:
    branches = field_type if isinstance(field_type, list) else [field_type]
    kind = rng.choice(branches)
    if kind == "null":
        return None
    logical = kind.get("logicalType") if isinstance(kind, dict) else None
    if logical == "date":
        return date(1970, 1, 1) + timedelta(days=rng.randint(-30_000, 30_000))
    if logical is not None:  # the timestamps
        zone = timezone(timedelta(minutes=rng.choice([0, 60, -330, 840])))
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=rng.randint(-1, 1) * rng.randint(0, 2**52)
        )
        return moment.astimezone(zone)
    if kind == "string":
        return "".join(rng.choice(string.printable + "éü€😀") for _ in range(rng.randint(0, 80)))
    bits = 31 if kind == "int" else 63
    return rng.choice(
        [0, -1, 1, 63, -64, 64, 2**bits - 1, -(2**bits), rng.randint(-(2**bits), 2**bits - 1)]
    )


@pytest.mark.parametrize("name", RECORDS)
def test_every_contract_record_is_written_as_fastavro_writes_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_called(*_: object) -> None:
        raise AssertionError("the compiled writer handed a contract record to fastavro")

    monkeypatch.setattr(fastavro, "schemaless_writer", not_called)
    schema = fastavro.parse_schema(load_schema(name))
    write = compile_writer(schema)
    rng = random.Random(name)
    for _ in range(500):
        record = {f["name"]: value_for(rng, f["type"]) for f in schema["fields"]}
        for field in schema["fields"]:  # a field with a default may be left out
            if "default" in field and rng.random() < 0.2:
                del record[field["name"]]
        assert write(record) == by_fastavro(schema, record), record


@pytest.mark.parametrize(
    "odd",
    [
        {"qty": True},  # a bool where an int goes
        {"qty": 2**31},  # out of an int's range
        {"qty": 1.5},
        {"product_version": "7"},
        {"occurred_at": datetime(2026, 1, 1, 12, 0)},  # naive: fastavro reads it as local time
        {"occurred_at": 1_764_000_000_000_000},  # already a count of microseconds
        {"batchref": b"bytes"},
    ],
)
def test_values_outside_the_written_cases_get_fastavros_bytes_or_error(odd: dict[str, Any]) -> None:
    schema = fastavro.parse_schema(load_schema("Allocated"))
    record = {"orderid": "o", "sku": "s", "qty": 1, "batchref": "b", **odd}
    expected = outcome(lambda: by_fastavro(schema, record))
    assert outcome(lambda: compile_writer(schema)(record)) == expected


def test_a_missing_field_without_default_is_fastavros_error() -> None:
    schema = fastavro.parse_schema(load_schema("Allocated"))
    record = {"orderid": "o", "sku": "s", "qty": 1}
    expected = outcome(lambda: by_fastavro(schema, record))
    assert not isinstance(expected, bytes)
    assert outcome(lambda: compile_writer(schema)(record)) == expected


def test_a_schema_of_other_shapes_is_written_by_fastavro() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Odd",
            "fields": [
                {"name": "tags", "type": {"type": "array", "items": "string"}},
                {"name": "either", "type": ["null", "int", "string"]},
            ],
        }
    )
    record = {"tags": ["a", "b"], "either": "x"}
    assert compile_writer(schema)(record) == by_fastavro(schema, record)
