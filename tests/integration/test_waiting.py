"""Orders waiting for their sku, on the real PostgreSQL: none is stranded by a race."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, select

from allocation.adapters import tables
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.bootstrap import command_handlers
from allocation.config import Settings
from allocation.domain import commands
from allocation.service_layer.handlers import EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import Envelope, Source, Wanted
from tests.conftest import random_batchref, random_orderid, random_sku


def waiting_for(engine: Engine, sku: str) -> int:
    with engine.connect() as connection:
        query = select(func.count()).where(tables.waiting_commands.c.sku == sku)
        return int(connection.execute(query).scalar_one())


def test_an_order_parked_beside_its_first_batch_is_applied_by_the_sweep(
    engine: Engine, settings: Settings, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    bus = MessageBus(uow_factory, command_handlers(settings), EVENT_HANDLERS)
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    order = Envelope(f"id:allocate:{orderid}", source=Source("allocate", 0, 5))

    # The first batch's transaction reads before the order is parked, commits after:
    # under REPEATABLE READ it cannot see the order, so it cannot take it.
    with uow_factory() as first_batch:
        first_batch.begin_message(Envelope(f"id:add-batch:{ref}", source=Source("add-batch", 0, 1)))
        first_batch.prefetch(Wanted(frozenset({sku}), frozenset(), frozenset()))
        assert bus.handle(commands.Allocate(orderid, sku, 2), order).waiting
        bus.dispatch(commands.CreateBatch(ref, sku, 10, None), first_batch)
        first_batch.commit()
    assert waiting_for(engine, sku) == 1

    applied, rejected = bus.sweep_waiting()
    assert (applied, rejected) == (1, [])
    assert waiting_for(engine, sku) == 0
    with engine.connect() as connection:
        o = tables.outbox.c
        events = connection.execute(
            select(o.event_type, o.causation_id).where(o.key == sku).order_by(o.id)
        ).all()
    assert [tuple(e) for e in events] == [("Allocated", order.message_id)]


def test_an_order_waiting_goes_before_a_newer_order_of_its_sku(
    engine: Engine, settings: Settings, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    bus = MessageBus(uow_factory, command_handlers(settings), EVENT_HANDLERS)
    sku, ref = random_sku(), random_batchref()
    early, late = (
        Envelope(f"id:allocate:{random_orderid()}-{n}", source=Source("allocate", 0, n))
        for n in (1, 2)
    )
    with uow_factory() as first_batch:
        first_batch.begin_message(None)
        first_batch.prefetch(Wanted(frozenset({sku}), frozenset(), frozenset()))
        bus.handle(commands.Allocate("early", sku, 10), early)
        bus.dispatch(commands.CreateBatch(ref, sku, 10, None), first_batch)
        first_batch.commit()
    # The later order comes before any sweep: the stranded one still goes first.
    bus.handle(commands.Allocate("late", sku, 10), late)
    with engine.connect() as connection:
        o = tables.outbox.c
        events = connection.execute(
            select(o.event_type, o.causation_id).where(o.key == sku).order_by(o.id)
        ).all()
    assert [tuple(e) for e in events] == [
        ("Allocated", early.message_id),
        ("OutOfStock", late.message_id),
    ]
