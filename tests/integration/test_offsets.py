"""Consumer offsets in PostgreSQL: they commit, and roll back, with the commands they follow."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from allocation.adapters import offsets
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.domain import commands
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.ports import ConsumedOffset
from allocation.service_layer.unit_of_work import Envelope
from tests.conftest import random_batchref, random_orderid, random_sku


@pytest.fixture
def bus(uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> MessageBus:
    return MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS, max_attempts=10)


def group() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def test_offsets_commit_with_the_commands_of_their_poll(engine: Engine, bus: MessageBus) -> None:
    g, sku = group(), random_sku()
    items = [(commands.CreateBatch(random_batchref(), sku, 10, None), Envelope(f"id:{g}"))]
    bus.handle_many(
        items, [ConsumedOffset(g, "add-batch", 0, 41), ConsumedOffset(g, "add-batch", 2, 7)]
    )
    bus.save_offsets([ConsumedOffset(g, "add-batch", 0, 42)])

    with engine.connect() as connection:
        assert offsets.of_group(connection, g) == {("add-batch", 0): 42, ("add-batch", 2): 7}
        assert offsets.stored(connection, g, [("add-batch", 2), ("allocate", 0)]) == {
            ("add-batch", 2): 7
        }


def test_a_poll_that_rolls_back_leaves_its_offsets_where_they_were(
    engine: Engine, bus: MessageBus
) -> None:
    g = group()
    bus.save_offsets([ConsumedOffset(g, "allocate", 0, 5)])
    # Poison, unlike a business rejection (which commits as an event), fails the transaction.
    poison = commands.Allocate(random_orderid(), random_sku(), -1)
    with pytest.raises(Exception, match="qty"):
        bus.handle_many([(poison, Envelope(f"id:{g}"))], [ConsumedOffset(g, "allocate", 0, 6)])

    with engine.connect() as connection:
        assert offsets.of_group(connection, g) == {("allocate", 0): 5}
