"""Registering the contract's schemas: subject ``<topic>-value``, compatibility BACKWARD."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from allocation.adapters.wire import Record

COMPATIBILITY = "BACKWARD"


class IncompatibleSchema(Exception):
    """A schema would break the readers of its subject; the registry refused it."""


@dataclass(frozen=True)
class Registered:
    subject: str
    schema_id: int
    version: int
    compatibility: str


def register(registry: SchemaRegistryClient, topic: str, schema: Record) -> Registered:
    """Register ``schema`` for ``topic``; idempotent, and refuses a BACKWARD-incompatible change.

    The compatibility level is set before registering when the subject exists
    (so the registry checks the new version against it), and right after the
    first version otherwise.
    """
    subject = f"{topic}-value"
    candidate = Schema(json.dumps(schema), "AVRO")
    exists = _has_versions(registry, subject)
    if exists:
        registry.set_compatibility(subject, COMPATIBILITY)
        if not registry.test_compatibility(subject, candidate):
            raise IncompatibleSchema(
                f"{schema.get('name')} is not {COMPATIBILITY}-compatible with the latest "
                f"version of {subject}; readers of {topic} could not read it"
            )
    try:
        schema_id = registry.register_schema(subject, candidate)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise IncompatibleSchema(f"{subject}: {exc.error_message}") from exc
        raise
    if not exists:
        registry.set_compatibility(subject, COMPATIBILITY)
    version = registry.lookup_schema(subject, candidate).version
    level = registry.get_compatibility(subject)
    return Registered(subject, schema_id, int(version or 0), str(level))


def _has_versions(registry: SchemaRegistryClient, subject: str) -> bool:
    # Asked of the one subject: listing every subject is capped by the registry
    # (Apicurio returns at most 1,000) and grows with every topic it serves.
    try:
        registry.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return False
        raise
    return True


def register_all(registry: SchemaRegistryClient, schemas: Mapping[str, Record]) -> list[Registered]:
    return [register(registry, topic, schema) for topic, schema in schemas.items()]
