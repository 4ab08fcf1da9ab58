"""The schemas of this build are compatible additions to those of the last release.

``tests/fixtures/schemas_v1/`` holds the schemas as they were released before
issue 15 (``git show <that commit>:allocation/schemas/X.avsc``). A registry that
holds them must accept the package's schemas at each subject's level: the deploy
gate, ``allocation schemas check``, passes, and so does registering.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from allocation.adapters.contract import compatibility_levels, topic_records, topic_schemas
from allocation.adapters.schemas import register, register_all
from allocation.config import Settings, settings_from
from allocation.entrypoints.cli.contract import schemas_check

RELEASED = Path(__file__).parents[1] / "fixtures" / "schemas_v1"


@pytest.fixture
def released(settings: Settings, registry: SchemaRegistryClient) -> Settings:
    """Scratch subjects holding the released schemas, at the contract's levels."""
    ours = settings.with_prefix(f"evolution-{uuid.uuid4().hex[:8]}")
    levels = compatibility_levels(ours)
    for topic, name in topic_records(ours).items():
        old = json.loads((RELEASED / f"{name}.avsc").read_text())
        register(registry, topic, old, levels[topic])
    return ours


def test_the_deploy_gate_passes_against_the_released_schemas(
    released: Settings, registry: SchemaRegistryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schemas_check(released, argparse.Namespace(), []) == 0
    verdicts = capsys.readouterr().out.split()
    assert verdicts.count("compatible") == len(topic_records(released))


def test_registering_them_makes_a_second_version_of_every_subject(
    released: Settings, registry: SchemaRegistryClient
) -> None:
    registered = register_all(registry, topic_schemas(released), compatibility_levels(released))
    assert {r.version for r in registered} == {2}


def test_every_field_of_every_schema_says_what_it_is() -> None:
    for name, schema in topic_schemas(settings_from()).items():
        assert schema.get("doc"), name
        undocumented = [f["name"] for f in schema["fields"] if not f.get("doc")]
        assert undocumented == [], name


def test_fields_added_since_the_release_are_optional() -> None:
    ours = settings_from()
    for topic, name in topic_records(ours).items():
        old = {f["name"] for f in json.loads((RELEASED / f"{name}.avsc").read_text())["fields"]}
        added = [f for f in topic_schemas(ours)[topic]["fields"] if f["name"] not in old]
        assert all("default" in f for f in added), name
