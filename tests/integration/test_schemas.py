"""Schemas in the real registry: registered per direction, changes checked before a deploy."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient

from allocation.adapters.contract import compatibility_levels, load_schema, topic_schemas
from allocation.adapters.schemas import IncompatibleSchema, check, register, register_all
from allocation.config import settings_from

BACKWARD, FULL = "BACKWARD_TRANSITIVE", "FULL_TRANSITIVE"


def scratch_topic() -> str:
    return f"schema-test-{uuid.uuid4().hex[:8]}"


def record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Probe",
        "namespace": "io.allocation.test",
        "fields": list(fields),
    }


A = {"name": "a", "type": "string"}
B_OPTIONAL = {"name": "b", "type": "int", "default": 0}


def test_the_contract_is_registered_once_at_each_directions_level(
    registry: SchemaRegistryClient,
) -> None:
    ours = settings_from().with_prefix(scratch_topic())
    schemas, levels = topic_schemas(ours), compatibility_levels(ours)

    first = register_all(registry, schemas, levels)
    again = register_all(registry, schemas, levels)

    assert [r.schema_id for r in first] == [r.schema_id for r in again]
    by_subject = {r.subject: (r.version, r.compatibility) for r in again}
    assert by_subject[f"{ours.topic_allocate}-value"] == (1, BACKWARD)
    assert by_subject[f"{ours.topic_line_allocated}-value"] == (1, FULL)
    assert by_subject[f"{ours.topic_command_rejected}-value"] == (1, FULL)
    assert len(by_subject) == 7


def test_a_compatible_change_is_a_new_version(registry: SchemaRegistryClient) -> None:
    topic = scratch_topic()
    register(registry, topic, record(A), FULL)
    evolved = register(registry, topic, record(A, B_OPTIONAL), FULL)
    assert (evolved.version, evolved.compatibility) == (2, FULL)


def test_an_incompatible_change_is_refused_with_a_clear_message(
    registry: SchemaRegistryClient,
) -> None:
    topic = scratch_topic()
    register(registry, topic, record(A), BACKWARD)
    with pytest.raises(IncompatibleSchema, match=f"not {BACKWARD}-compatible .* {topic}-value"):
        register(registry, topic, record({"name": "a", "type": "int"}), BACKWARD)
    assert registry.get_latest_version(f"{topic}-value").version == 1


def test_check_accepts_the_same_schema_and_a_compatible_change(
    registry: SchemaRegistryClient,
) -> None:
    topic = scratch_topic()
    assert check(registry, topic, record(A), FULL).verdict == "new subject"
    register(registry, topic, record(A), FULL)
    assert check(registry, topic, record(A), FULL).verdict == "unchanged"
    assert check(registry, topic, record(A, B_OPTIONAL), FULL).verdict == "compatible"


def test_check_refuses_a_change_that_breaks_downstream_readers_and_registers_nothing(
    registry: SchemaRegistryClient,
) -> None:
    ours = settings_from().with_prefix(scratch_topic())
    register_all(registry, topic_schemas(ours), compatibility_levels(ours))
    allocated = load_schema("Allocated")
    # A reader on the current schema cannot read events without batchref: not FULL.
    broken = {**allocated, "fields": [f for f in allocated["fields"] if f["name"] != "batchref"]}

    result = check(registry, ours.topic_line_allocated, broken, FULL)

    assert (result.ok, result.verdict) == (False, "incompatible")
    assert "version 1" in result.reason
    assert registry.get_versions(f"{ours.topic_line_allocated}-value") == [1]


def test_check_is_transitive(registry: SchemaRegistryClient) -> None:
    """Compatible with the latest version is not enough: every version must still be read."""
    topic = scratch_topic()
    register(registry, topic, record(A), BACKWARD)
    register(registry, topic, record({"name": "a", "type": "string", "default": "x"}), BACKWARD)
    registry.set_compatibility(f"{topic}-value", "BACKWARD")  # let a non-transitive step in
    register(registry, topic, record(B_OPTIONAL), "BACKWARD")
    # Reads the latest version (no a), but not the older ones (a string read as an int).
    candidate = record({"name": "a", "type": "int", "default": 0}, B_OPTIONAL)
    registry.set_compatibility(f"{topic}-value", BACKWARD)
    assert registry.test_compatibility(
        f"{topic}-value", RegistrySchema(json.dumps(candidate), "AVRO")
    )
    result = check(registry, topic, candidate, BACKWARD)
    assert result.verdict == "incompatible", result


def test_check_says_when_a_subject_is_held_at_another_level(
    registry: SchemaRegistryClient,
) -> None:
    topic = scratch_topic()
    register(registry, topic, record(A), "BACKWARD")
    result = check(registry, topic, record(A), FULL)
    assert (result.ok, result.verdict) == (False, "wrong level")
    assert "register first" in result.reason
