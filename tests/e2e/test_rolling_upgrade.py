"""During a rolling upgrade the relay sends each outbox row with the schema it was written for."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine, insert

from allocation.adapters.schemas import register
from allocation.adapters.tables import outbox
from allocation.bootstrap import avro_codec
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import Service, service_env
from testkit.topics import drop_topics
from testkit.traffic import DecodingReader
from tests.conftest import random_sku

RELEASED = Path(__file__).parents[1] / "fixtures" / "schemas_v1"


@pytest.fixture
def upgraded(
    settings: Settings, engine: Engine, admin: AdminClient, registry: SchemaRegistryClient
) -> Iterator[Settings]:
    """Topics whose Allocated subject holds the released schema (1), then this build's (2)."""
    ours = settings.with_prefix(f"upgrade-{uuid.uuid4().hex[:6]}", topic_partitions=1)
    create_contract_topics(ours)
    released = json.loads((RELEASED / "Allocated.avsc").read_text())
    register(registry, ours.topic_line_allocated, released, "FULL_TRANSITIVE")
    register_contract_schemas(ours)
    yield ours
    drop_topics(admin, ours.all_topics)


def test_each_row_goes_out_with_the_schema_version_it_names(
    upgraded: Settings, engine: Engine, registry: SchemaRegistryClient, log_dir: Path
) -> None:
    sku = random_sku()
    line = {"orderid": "o1", "sku": sku, "qty": 1, "batchref": "b1"}
    written_for = {"old build": 1, "new build": 2, "before the column": None}
    ids = {}
    with engine.begin() as connection:
        for who, version in written_for.items():
            ids[who] = uuid.uuid4()
            payload = line if version != 2 else {**line, "product_version": 5}
            connection.execute(
                insert(outbox).values(
                    event_id=ids[who],
                    event_type="Allocated",
                    topic=upgraded.topic_line_allocated,
                    key=sku,
                    payload=payload,
                    occurred_at=datetime.now(UTC),
                    schema_version=version,
                )
            )
    subject = f"{upgraded.topic_line_allocated}-value"
    schema_ids = {v: registry.get_version(subject, v).schema_id for v in (1, 2)}
    relay = Service(["relay"], service_env(upgraded), log_dir, "relay").start()
    reader = DecodingReader(upgraded, avro_codec(upgraded), [upgraded.topic_line_allocated])
    try:
        received = reader.read_until(lambda got: len([r for r in got if r.key == sku]) == 3, 60)
    finally:
        reader.close()
        assert relay.terminate() == 0

    by_event = {r.headers["event_id"]: r for r in received if r.key == sku}
    sent_with = {
        who: struct.unpack(">bI", (by_event[str(event_id)].raw or b"")[:5])[1]
        for who, event_id in ids.items()
    }
    assert sent_with == {
        "old build": schema_ids[1],
        "new build": schema_ids[2],
        "before the column": schema_ids[2],
    }
    old = by_event[str(ids["old build"])].value
    new = by_event[str(ids["new build"])].value
    assert old is not None
    assert new is not None
    assert (old["event_id"], old["product_version"]) == (None, None)  # v1 has no such fields
    assert (new["event_id"], new["product_version"]) == (str(ids["new build"]), 5)
