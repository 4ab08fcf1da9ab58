"""Registering schemas in the real registry: idempotent, BACKWARD, refusing breaking changes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from allocation.adapters.contract import load_schema
from allocation.adapters.schemas import IncompatibleSchema, register, register_all


def scratch_topic() -> str:
    return f"schema-test-{uuid.uuid4().hex[:8]}"


def record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Probe",
        "namespace": "io.allocation.test",
        "fields": list(fields),
    }


def test_registering_the_contract_twice_changes_nothing(registry: SchemaRegistryClient) -> None:
    prefix = scratch_topic()
    contract = {f"{prefix}-{name}": load_schema(name) for name in ("Allocate", "Allocated")}

    first = register_all(registry, contract)
    again = register_all(registry, contract)

    assert [r.schema_id for r in first] == [r.schema_id for r in again]
    assert {r.subject for r in again} == {f"{t}-value" for t in contract}
    assert {(r.version, r.compatibility) for r in again} == {(1, "BACKWARD")}


def test_a_backward_compatible_change_is_a_new_version(registry: SchemaRegistryClient) -> None:
    topic = scratch_topic()
    register(registry, topic, record({"name": "a", "type": "string"}))
    evolved = register(
        registry,
        topic,
        record({"name": "a", "type": "string"}, {"name": "b", "type": "int", "default": 0}),
    )
    assert (evolved.version, evolved.compatibility) == (2, "BACKWARD")


def test_an_incompatible_change_is_refused_with_a_clear_message(
    registry: SchemaRegistryClient,
) -> None:
    topic = scratch_topic()
    register(registry, topic, record({"name": "a", "type": "string"}))
    with pytest.raises(IncompatibleSchema, match=f"not BACKWARD-compatible .* {topic}-value"):
        register(registry, topic, record({"name": "a", "type": "int"}))
    with pytest.raises(IncompatibleSchema):
        register(
            registry, topic, record({"name": "a", "type": "string"}, {"name": "c", "type": "int"})
        )
    assert registry.get_latest_version(f"{topic}-value").version == 1
