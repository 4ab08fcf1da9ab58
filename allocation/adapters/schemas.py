"""The contract's schemas in the registry: registering them, and checking a change first.

Each subject (``<topic>-value``) has the compatibility its readers need. The
service reads the command topics, so their subjects are BACKWARD_TRANSITIVE: it
can read what any older producer wrote. Other services read the event topics,
so theirs are FULL_TRANSITIVE: a consumer built against any older version keeps
reading new events, and a new consumer reads old ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from allocation.adapters.contract import Schema, subject


class IncompatibleSchema(Exception):
    """A schema would break the readers of its subject; the registry refused it."""


@dataclass(frozen=True)
class Registered:
    """A subject's version that holds the contract's schema."""

    subject: str
    schema_id: int
    version: int
    compatibility: str


@dataclass(frozen=True)
class Checked:
    """What registering a schema would do to its subject, found without registering it."""

    subject: str
    verdict: str  # "new subject", "unchanged", "compatible", "incompatible" or "wrong level"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in ("new subject", "unchanged", "compatible")


def register(registry: SchemaRegistryClient, topic: str, schema: Schema, level: str) -> Registered:
    """Register ``schema`` for ``topic`` under compatibility ``level``; idempotent.

    The level is set before registering when the subject exists (so the registry
    checks the new version against it), and right after the first version otherwise.
    """
    name = subject(topic)
    candidate = RegistrySchema(json.dumps(schema), "AVRO")
    exists = _has_versions(registry, name)
    if exists:
        registry.set_compatibility(name, level)
        if not registry.test_compatibility(name, candidate):
            raise IncompatibleSchema(
                f"{schema.get('name')} is not {level}-compatible with the latest "
                f"version of {name}; readers of {topic} could not read it"
            )
    try:
        schema_id = registry.register_schema(name, candidate)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise IncompatibleSchema(f"{name}: {exc.error_message}") from exc
        raise
    if not exists:
        registry.set_compatibility(name, level)
    version = registry.lookup_schema(name, candidate).version
    return Registered(name, schema_id, int(version or 0), str(registry.get_compatibility(name)))


def check(registry: SchemaRegistryClient, topic: str, schema: Schema, level: str) -> Checked:
    """Whether registering ``schema`` would be accepted under ``level``, against every version.

    Nothing is written. A subject still at another level is reported as such: the
    registry checks under the level it holds, so that answer would not be this one.
    """
    name = subject(topic)
    if not _has_versions(registry, name):
        return Checked(name, "new subject")
    candidate = RegistrySchema(json.dumps(schema), "AVRO")
    held = str(registry.get_compatibility(name))
    if held != level:
        return Checked(
            name, "wrong level", f"held at {held}, the contract wants {level}: register first"
        )
    try:
        registry.lookup_schema(name, candidate)
        return Checked(name, "unchanged")
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise
    for version in registry.get_versions(name):
        if not registry.test_compatibility(name, candidate, version=version):
            return Checked(
                name, "incompatible", f"not {level}-compatible with version {version} of {name}"
            )
    return Checked(name, "compatible")


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


def register_all(
    registry: SchemaRegistryClient, schemas: Mapping[str, Schema], levels: Mapping[str, str]
) -> list[Registered]:
    """Register each topic's schema at its topic's level, in order."""
    return [register(registry, topic, schema, levels[topic]) for topic, schema in schemas.items()]


def check_all(
    registry: SchemaRegistryClient, schemas: Mapping[str, Schema], levels: Mapping[str, str]
) -> list[Checked]:
    """Check each topic's schema at its topic's level; registers nothing."""
    return [check(registry, topic, schema, levels[topic]) for topic, schema in schemas.items()]
