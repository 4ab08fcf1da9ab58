"""Rows written by one build are sent as written by the relay of another.

The released schemas (``tests/fixtures/schemas_v1``) and this build's are both
registered under scratch subjects, as during a rolling upgrade.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from allocation.adapters import tables
from allocation.adapters.avro import AvroCodec
from allocation.adapters.contract import load_schema
from allocation.adapters.schemas import register
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.bootstrap import event_routes
from allocation.config import Settings
from allocation.domain import commands
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from tests.conftest import random_batchref, random_orderid, random_sku

RELEASED = Path(__file__).parents[1] / "fixtures" / "schemas_v1"
FULL = "FULL_TRANSITIVE"


@pytest.fixture
def topic(registry: SchemaRegistryClient) -> str:
    """A scratch Allocated topic holding version 1 (released) and 2 (this build)."""
    name = f"upgrade-test-{uuid.uuid4().hex[:8]}"
    register(registry, name, json.loads((RELEASED / "Allocated.avsc").read_text()), FULL)
    register(registry, name, load_schema("Allocated"), FULL)
    return name


@pytest.fixture
def codec(registry: SchemaRegistryClient, topic: str) -> AvroCodec:
    return AvroCodec(registry, {topic: load_schema("Allocated")})


RECORD = {
    "orderid": "o1",
    "sku": "LAMP",
    "qty": 2,
    "batchref": "b1",
    "product_version": 7,
    "event_id": str(uuid.uuid4()),
    "occurred_at": datetime(2026, 11, 28, tzinfo=UTC),
    "causation_id": "allocate:0:1",
}


def schema_id_of(data: bytes) -> int:
    return int(struct.unpack(">bI", data[:5])[1])


def test_a_row_is_encoded_with_the_version_it_names(
    codec: AvroCodec, topic: str, registry: SchemaRegistryClient
) -> None:
    released = registry.get_version(f"{topic}-value", 1)

    old = codec.encode_as(topic, RECORD, 1)

    assert schema_id_of(old) == released.schema_id
    body = io.BytesIO(old[5:])
    old_schema = fastavro.parse_schema(json.loads(released.schema.schema_str))
    assert fastavro.schemaless_reader(body, old_schema) == {
        "orderid": "o1",
        "sku": "LAMP",
        "qty": 2,
        "batchref": "b1",
    }
    assert body.tell() == len(old) - 5  # nothing of the newer fields was written


def test_a_row_naming_no_version_goes_out_with_this_builds_schema_and_defaults(
    codec: AvroCodec, topic: str, registry: SchemaRegistryClient
) -> None:
    written_by_an_old_build = {"orderid": "o1", "sku": "LAMP", "qty": 2, "batchref": "b1"}

    data = codec.encode_as(topic, written_by_an_old_build, None)

    assert schema_id_of(data) == registry.get_version(f"{topic}-value", 2).schema_id
    assert codec.decode(topic, data)["product_version"] is None


def test_a_version_the_registry_lacks_is_refused_for_this_row(codec: AvroCodec, topic: str) -> None:
    with pytest.raises(LookupError, match="version 9 of"):
        codec.encode_as(topic, RECORD, 9)


def test_the_writer_stores_the_version_of_its_own_schema(
    registry: SchemaRegistryClient,
    settings: Settings,
    engine: Engine,
    sessions: Callable[[], Session],
) -> None:
    ours = settings.with_prefix(f"upgrade-test-{uuid.uuid4().hex[:8]}")
    register(
        registry,
        ours.topic_line_allocated,
        json.loads((RELEASED / "Allocated.avsc").read_text()),
        FULL,
    )
    register(registry, ours.topic_line_allocated, load_schema("Allocated"), FULL)
    codec = AvroCodec(registry, {ours.topic_line_allocated: load_schema("Allocated")})
    routes = event_routes(ours)
    bus = MessageBus(
        lambda: SqlAlchemyUnitOfWork(sessions, routes, codec.version_of),
        COMMAND_HANDLERS,
        EVENT_HANDLERS,
    )
    sku = random_sku()
    bus.handle(commands.CreateBatch(random_batchref(), sku, 10, None))
    bus.handle(commands.Allocate(random_orderid(), sku, 1))  # Allocated: registered
    bus.handle(commands.Allocate(random_orderid(), sku, 50))  # OutOfStock: not registered

    with engine.connect() as connection:
        rows = connection.execute(
            select(tables.outbox.c.event_type, tables.outbox.c.schema_version)
            .where(tables.outbox.c.key == sku)
            .order_by(tables.outbox.c.id)
        ).all()
    assert [tuple(row) for row in rows] == [("Allocated", 2), ("OutOfStock", None)]
