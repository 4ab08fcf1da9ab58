"""Rejections on the real PostgreSQL: one in the middle of a poll leaves the others applied."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, select

from allocation.adapters import tables
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.domain import commands
from allocation.domain.errors import InvalidSku
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import Envelope, Source
from tests.conftest import random_batchref, random_orderid, random_sku


def test_a_rejection_mid_poll_commits_with_the_others_and_is_rejected_once(
    engine: Engine, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    bus = MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS)
    sku, ref, unknown = random_sku(), random_batchref(), random_sku("unknown")
    bus.handle(commands.CreateBatch(ref, sku, 10, None))
    ids = [f"{random_orderid()}-{n}" for n in range(3)]
    poll = [
        (commands.Allocate(ids[0], sku, 2), Envelope(ids[0], source=Source("allocate", 0, 1))),
        (commands.Allocate(ids[1], unknown, 1), Envelope(ids[1], source=Source("allocate", 1, 7))),
        (commands.Allocate(ids[2], sku, 3), Envelope(ids[2], source=Source("allocate", 0, 2))),
    ]
    outcomes = bus.handle_many(poll)
    assert [o.result for o in outcomes] == [ref, None, ref]
    assert isinstance(outcomes[1].rejection, InvalidSku)
    again = bus.handle_many(poll)  # the whole poll re-delivered
    assert all(o.duplicate for o in again)

    o = tables.outbox.c
    with engine.connect() as connection:
        rows = connection.execute(
            select(o.event_type, o.key, o.causation_id, o.payload)
            .where(o.causation_id.in_(ids))
            .order_by(o.id)
        ).all()
        inbox = connection.execute(
            select(tables.inbox.c.message_id).where(tables.inbox.c.message_id.in_(ids))
        ).all()
        allocated = connection.execute(
            select(tables.batches.c.allocated_quantity).where(tables.batches.c.reference == ref)
        ).scalar_one()
    assert [(r.event_type, r.key, r.causation_id) for r in rows] == [
        ("Allocated", sku, ids[0]),
        ("CommandRejected", unknown, ids[1]),
        ("Allocated", sku, ids[2]),
    ]
    rejected = rows[1].payload
    assert (rejected["reason"], rejected["source_partition"], rejected["source_offset"]) == (
        "InvalidSku",
        1,
        7,
    )
    assert len(inbox) == 3
    assert allocated == 5
