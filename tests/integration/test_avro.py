"""The Avro codec against the real registry: the Confluent wire format, both ways."""

from __future__ import annotations

import json
import struct
import uuid
from datetime import date

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from allocation.adapters.avro import (
    AvroCodec,
    InvalidRecord,
    UndecodableMessage,
    UnknownSchemaId,
    WrongRecordType,
)
from allocation.adapters.contract import load_schema
from allocation.adapters.schemas import register


@pytest.fixture(scope="module")
def topics(registry: SchemaRegistryClient) -> dict[str, str]:
    prefix = f"avro-test-{uuid.uuid4().hex[:8]}"
    names = {"add": "CreateBatch", "allocate": "Allocate", "allocated": "Allocated"}
    for key, record in names.items():
        register(registry, f"{prefix}-{key}", load_schema(record), "BACKWARD")
    return {key: f"{prefix}-{key}" for key in names}


@pytest.fixture
def codec(registry: SchemaRegistryClient, topics: dict[str, str]) -> AvroCodec:
    records = {"add": "CreateBatch", "allocate": "Allocate", "allocated": "Allocated"}
    return AvroCodec(registry, {topics[k]: load_schema(r) for k, r in records.items()})


def test_round_trips_in_the_confluent_wire_format(
    codec: AvroCodec, topics: dict[str, str], registry: SchemaRegistryClient
) -> None:
    record = {"ref": "b1", "sku": "LAMP", "qty": 5, "eta": date(2026, 12, 24)}
    data = codec.encode(topics["add"], record)
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == registry.get_latest_version(f"{topics['add']}-value").schema_id
    assert codec.decode(topics["add"], data) == record


def test_reads_a_record_written_with_an_older_compatible_schema(
    codec: AvroCodec, topics: dict[str, str], registry: SchemaRegistryClient
) -> None:
    older = load_schema("CreateBatch")
    older["fields"] = [f for f in older["fields"] if f["name"] != "eta"]
    older_id = registry.register_schema(
        f"{topics['add']}-old-value", Schema(json.dumps(older), "AVRO")
    )
    body = b"\x04b1" + b"\x08LAMP" + b"\x0a"  # ref "b1", sku "LAMP", qty 5
    decoded = codec.decode(topics["add"], struct.pack(">bI", 0, older_id) + body)
    assert decoded == {"ref": "b1", "sku": "LAMP", "qty": 5, "eta": None}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, UndecodableMessage),
        (b"", UndecodableMessage),
        (b"\x00\x00\x01", UndecodableMessage),
        (b'{"orderid": "o1"}', UndecodableMessage),
        (struct.pack(">bI", 0, 2_000_000_000) + b"\x02a", UnknownSchemaId),
    ],
)
def test_bytes_that_are_not_a_record_are_poison(
    codec: AvroCodec, topics: dict[str, str], data: bytes | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        codec.decode(topics["allocate"], data)


def test_a_record_of_another_topic_is_the_wrong_type(
    codec: AvroCodec, topics: dict[str, str]
) -> None:
    allocated = codec.encode(
        topics["allocated"], {"orderid": "o", "sku": "s", "qty": 1, "batchref": "b"}
    )
    with pytest.raises(WrongRecordType, match="Allocated"):
        codec.decode(topics["allocate"], allocated)


def test_truncated_and_padded_bodies_are_poison(codec: AvroCodec, topics: dict[str, str]) -> None:
    data = codec.encode(topics["allocate"], {"orderid": "o1", "sku": "LAMP", "qty": 3})
    with pytest.raises(UndecodableMessage):
        codec.decode(topics["allocate"], data[:-2])
    with pytest.raises(UndecodableMessage, match="after the Avro record"):
        codec.decode(topics["allocate"], data + b"\x00")


def test_a_writer_schema_missing_a_required_field_is_an_invalid_record(
    codec: AvroCodec, topics: dict[str, str], registry: SchemaRegistryClient
) -> None:
    partial = load_schema("Allocate")
    partial["fields"] = [f for f in partial["fields"] if f["name"] != "qty"]
    partial_id = registry.register_schema(
        f"{topics['allocate']}-partial-value", Schema(json.dumps(partial), "AVRO")
    )
    with pytest.raises(InvalidRecord, match="qty"):
        codec.decode(topics["allocate"], struct.pack(">bI", 0, partial_id) + b"\x04o1\x08LAMP")
