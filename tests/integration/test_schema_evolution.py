"""The schemas of this build are compatible additions to those of the last release.

``tests/fixtures/schemas_v1/`` holds the schemas as they were released before
issue 15 (``git show <that commit>:allocation/schemas/X.avsc``). A registry that
holds them must accept the package's schemas at each subject's level: the deploy
gate, ``allocation schemas check``, passes, and so does registering. A record
added since (CommandRejected, on its own new topic) is a new subject.
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


def released_records(settings: Settings) -> dict[str, str]:
    """topic -> record, for the topics the release had."""
    return {
        topic: name
        for topic, name in topic_records(settings).items()
        if (RELEASED / f"{name}.avsc").exists()
    }


@pytest.fixture
def released(registry: SchemaRegistryClient, settings: Settings) -> Settings:
    """Scratch subjects holding the released schemas, at the contract's levels."""
    # The test stack's settings: the gate must ask the registry the subjects are in.
    ours = settings.with_prefix(f"evolution-{uuid.uuid4().hex[:8]}")
    levels = compatibility_levels(ours)
    for topic, name in released_records(ours).items():
        old = json.loads((RELEASED / f"{name}.avsc").read_text())
        register(registry, topic, old, levels[topic])
    return ours


def test_the_deploy_gate_passes_against_the_released_schemas(
    released: Settings, registry: SchemaRegistryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schemas_check(released, argparse.Namespace(), []) == 0
    verdicts = capsys.readouterr().out.split()
    assert verdicts.count("compatible") == len(released_records(released))
    new = len(topic_records(released)) - len(released_records(released))
    assert (new, " ".join(verdicts).count("new subject")) == (1, 1)


def test_registering_them_makes_a_second_version_of_every_subject(
    released: Settings, registry: SchemaRegistryClient
) -> None:
    registered = register_all(registry, topic_schemas(released), compatibility_levels(released))
    released_subjects = {f"{topic}-value" for topic in released_records(released)}
    assert {r.version for r in registered if r.subject in released_subjects} == {2}
    assert {r.version for r in registered if r.subject not in released_subjects} == {1}


def test_every_field_of_every_schema_says_what_it_is() -> None:
    for name, schema in topic_schemas(settings_from()).items():
        assert schema.get("doc"), name
        undocumented = [f["name"] for f in schema["fields"] if not f.get("doc")]
        assert undocumented == [], name


def test_fields_added_since_the_release_are_optional() -> None:
    ours = settings_from()
    for topic, name in released_records(ours).items():
        old = {f["name"] for f in json.loads((RELEASED / f"{name}.avsc").read_text())["fields"]}
        added = [f for f in topic_schemas(ours)[topic]["fields"] if f["name"] not in old]
        assert all("default" in f for f in added), name
