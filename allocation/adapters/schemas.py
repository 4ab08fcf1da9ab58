"""Registering the contract's schemas: subject ``<topic>-value``, compatibility BACKWARD."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from allocation.adapters.contract import Schema, subject

COMPATIBILITY = "BACKWARD"


class IncompatibleSchema(Exception):
    """A schema would break the readers of its subject; the registry refused it."""


@dataclass(frozen=True)
class Registered:
    subject: str
    schema_id: int
    version: int
    compatibility: str


def register(registry: SchemaRegistryClient, topic: str, schema: Schema) -> Registered:
    """Register ``schema`` for ``topic``; idempotent, and refuses a BACKWARD-incompatible change.

    The compatibility level is set before registering when the subject exists
    (so the registry checks the new version against it), and right after the
    first version otherwise.
    """
    name = subject(topic)
    candidate = RegistrySchema(json.dumps(schema), "AVRO")
    exists = _has_versions(registry, name)
    if exists:
        registry.set_compatibility(name, COMPATIBILITY)
        if not registry.test_compatibility(name, candidate):
            raise IncompatibleSchema(
                f"{schema.get('name')} is not {COMPATIBILITY}-compatible with the latest "
                f"version of {name}; readers of {topic} could not read it"
            )
    try:
        schema_id = registry.register_schema(name, candidate)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise IncompatibleSchema(f"{name}: {exc.error_message}") from exc
        raise
    if not exists:
        registry.set_compatibility(name, COMPATIBILITY)
    version = registry.lookup_schema(name, candidate).version
    level = registry.get_compatibility(name)
    return Registered(name, schema_id, int(version or 0), str(level))


def _has_versions(registry: SchemaRegistryClient, name: str) -> bool:
    # Asked of the one subject: listing every subject is capped by the registry
    # (Apicurio returns at most 1,000) and grows with every topic it serves.
    try:
        registry.get_latest_version(name)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return False
        raise
    return True


def register_all(registry: SchemaRegistryClient, schemas: Mapping[str, Schema]) -> list[Registered]:
    """Register each topic's schema, in order."""
    return [register(registry, topic, schema) for topic, schema in schemas.items()]
