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
    SchemaNotInSubject,
    UndecodableMessage,
    UnknownSchemaId,
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


def fresh_topic(registry: SchemaRegistryClient, *versions: dict[str, object]) -> str:
    """A topic whose subject holds ``versions``, oldest first, under BACKWARD."""
    topic = f"avro-test-{uuid.uuid4().hex[:8]}-fresh"
    for version in versions:
        register(registry, topic, version, "BACKWARD")
    return topic


def test_reads_a_record_written_with_an_older_compatible_schema(
    registry: SchemaRegistryClient,
) -> None:
    older = load_schema("CreateBatch")
    older["fields"] = [f for f in older["fields"] if f["name"] != "eta"]
    topic = fresh_topic(registry, older, load_schema("CreateBatch"))
    older_id = registry.lookup_schema(f"{topic}-value", Schema(json.dumps(older), "AVRO")).schema_id
    codec = AvroCodec(registry, {topic: load_schema("CreateBatch")})
    body = b"\x04b1" + b"\x08LAMP" + b"\x0a"  # ref "b1", sku "LAMP", qty 5
    decoded = codec.decode(topic, struct.pack(">bI", 0, older_id) + body)
    assert decoded == {"ref": "b1", "sku": "LAMP", "qty": 5, "eta": None}


def test_an_id_registered_under_another_subject_is_not_read_as_the_topics(
    codec: AvroCodec, topics: dict[str, str], registry: SchemaRegistryClient
) -> None:
    # A valid Allocate writer schema, but one the topic's subject never checked.
    other = {**load_schema("Allocate"), "doc": "registered elsewhere"}
    other_subject = f"{topics['allocate']}-elsewhere-value"
    foreign = registry.register_schema(other_subject, Schema(json.dumps(other), "AVRO"))
    data = struct.pack(">bI", 0, foreign) + b"\x04o1\x08LAMP\x06"
    with pytest.raises(
        SchemaNotInSubject, match=rf"schema id {foreign} is not a version of {topics['allocate']}"
    ):
        codec.decode(topics["allocate"], data)


def test_a_version_registered_after_the_codec_started_is_read(
    registry: SchemaRegistryClient,
) -> None:
    first = load_schema("Allocate")
    topic = fresh_topic(registry, first)
    codec = AvroCodec(registry, {topic: first})
    record = {"orderid": "o1", "sku": "LAMP", "qty": 3}
    assert codec.decode(topic, codec.encode(topic, record)) == record
    second = {
        **first,
        "fields": [*first["fields"], {"name": "note", "type": "string", "default": ""}],
    }
    later = register(registry, topic, second, "BACKWARD").schema_id
    body = b"\x04o1\x08LAMP\x06\x04hi"
    assert codec.decode(topic, struct.pack(">bI", 0, later) + body) == record


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


def test_a_record_of_another_topic_is_not_read_as_this_ones(
    codec: AvroCodec, topics: dict[str, str]
) -> None:
    allocated = codec.encode(
        topics["allocated"], {"orderid": "o", "sku": "s", "qty": 1, "batchref": "b"}
    )
    with pytest.raises(SchemaNotInSubject, match=f"{topics['allocated']}-value"):
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
    # Dropping a field is BACKWARD-compatible, so the subject takes it; this build cannot read it.
    partial = load_schema("Allocate")
    partial["fields"] = [f for f in partial["fields"] if f["name"] != "qty"]
    topic = fresh_topic(registry, load_schema("Allocate"), partial)
    partial_id = registry.lookup_schema(
        f"{topic}-value", Schema(json.dumps(partial), "AVRO")
    ).schema_id
    codec = AvroCodec(registry, {topic: load_schema("Allocate")})
    with pytest.raises(InvalidRecord, match="qty"):
        codec.decode(topic, struct.pack(">bI", 0, partial_id) + b"\x04o1\x08LAMP")
