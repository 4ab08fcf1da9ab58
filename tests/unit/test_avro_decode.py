"""The Avro decode against a fake registry: only the topic subject's ids, and bounded work."""

from __future__ import annotations

import io
import struct
from typing import Any, cast

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from allocation.adapters.avro import (
    AvroCodec,
    OversizeRecord,
    SchemaNotInSubject,
    UnboundedSchema,
    UndecodableMessage,
    UnknownSchemaId,
)
from allocation.adapters.avro_bounds import MAX_RECORD_BYTES
from allocation.adapters.contract import load_schema
from testkit.hostile import spinning_record, with_zero_byte_array
from tests.fakes import FakeSchemaRegistry

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

TOPIC = "allocate"
ALLOCATE = load_schema("Allocate")
PADDED = with_zero_byte_array(ALLOCATE)


def wire(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


@pytest.fixture
def registry() -> FakeSchemaRegistry:
    fake = FakeSchemaRegistry()
    fake.register(f"{TOPIC}-value", ALLOCATE)
    return fake


@pytest.fixture
def codec(registry: FakeSchemaRegistry) -> AvroCodec:
    return AvroCodec(cast(SchemaRegistryClient, registry), {TOPIC: ALLOCATE})


ORDER = {"orderid": "o1", "sku": "LAMP", "qty": 3}


def test_an_id_registered_only_under_another_subject_is_poison_naming_id_and_subject(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    other = {**ALLOCATE, "doc": "the same record, registered elsewhere"}
    foreign = registry.register("scratch-value", other)
    with pytest.raises(SchemaNotInSubject, match=rf"schema id {foreign} .*{TOPIC}-value"):
        codec.decode(TOPIC, wire(foreign, other, ORDER))


def test_an_id_of_the_subject_is_asked_of_the_registry_once(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    data = wire(registry.subjects[f"{TOPIC}-value"][0], ALLOCATE, ORDER)
    for _ in range(3):
        assert codec.decode(TOPIC, data) == ORDER
    assert registry.calls["get_schema_versions"] == 1
    assert registry.calls["get_schema"] == 1


def test_a_version_registered_after_the_first_decode_is_accepted(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    assert codec.decode(TOPIC, wire(1, ALLOCATE, ORDER)) == ORDER
    newer = {**ALLOCATE, "doc": "version 2"}
    later = registry.register(f"{TOPIC}-value", newer)
    assert codec.decode(TOPIC, wire(later, newer, ORDER)) == ORDER


def test_a_foreign_id_is_not_asked_again_for_every_record(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    other = {**ALLOCATE, "doc": "elsewhere"}
    foreign = registry.register("scratch-value", other)
    for _ in range(3):
        with pytest.raises(SchemaNotInSubject):
            codec.decode(TOPIC, wire(foreign, other, ORDER))
    assert registry.calls["get_schema_versions"] == 1
    assert registry.calls["get_schema"] == 0


def test_an_id_unknown_to_the_registry_is_poison(codec: AvroCodec) -> None:
    with pytest.raises(UnknownSchemaId, match="schema id 999"):
        codec.decode(TOPIC, wire(999, ALLOCATE, ORDER))


def test_a_record_over_the_byte_limit_is_refused_before_the_registry_is_asked(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    big = wire(1, ALLOCATE, {**ORDER, "orderid": "o" * MAX_RECORD_BYTES})
    with pytest.raises(OversizeRecord, match=f"{MAX_RECORD_BYTES}-byte limit"):
        codec.decode(TOPIC, big)
    assert sum(registry.calls.values()) == 0


def test_a_block_count_of_2_to_the_62_over_zero_byte_items_is_poison_not_a_spin(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    # Registered under the topic's own subject: the registry would accept it (a new
    # field with a default is BACKWARD-compatible), so only the decode can refuse it.
    padded = registry.register(f"{TOPIC}-value", PADDED)
    hostile = spinning_record(padded, ALLOCATE, ORDER)
    with pytest.raises(UnboundedSchema, match=r"pad\[\]"):
        codec.decode(TOPIC, hostile)
    with pytest.raises(UnboundedSchema):  # the verdict is kept: the registry is not asked again
        codec.decode(TOPIC, hostile)
    assert registry.calls["get_schema"] == 1


def test_a_huge_block_count_over_items_of_one_byte_or_more_stops_at_the_record_end(
    codec: AvroCodec, registry: FakeSchemaRegistry
) -> None:
    ints = {
        **ALLOCATE,
        "fields": [
            *ALLOCATE["fields"],
            {"name": "pad", "type": {"type": "array", "items": "int"}, "default": []},
        ],
    }
    schema_id = registry.register(f"{TOPIC}-value", ints)
    # Each int item costs a byte: the reader runs out of record after 1,000 of them.
    hostile = spinning_record(schema_id, ALLOCATE, ORDER)[:-1] + b"\x02" * 1000
    with pytest.raises(UndecodableMessage, match="does not decode"):
        codec.decode(TOPIC, hostile)


def test_encoding_for_a_topic_without_a_schema_names_the_topic_and_the_known_ones(
    codec: AvroCodec,
) -> None:
    # An outbox row of a topic renamed since: the relay's error says which, not KeyError.
    with pytest.raises(LookupError, match=r"no schema for topic 'renamed': .* are allocate "):
        codec.encode("renamed", ORDER)
