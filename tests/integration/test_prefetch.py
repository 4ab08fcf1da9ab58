"""A group's lookups, its products' included, go in one statement, each answer to its adapter."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, delete, event, select

from allocation.adapters.tables import allocations, batches, products, waiting_commands
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.bootstrap import command_handlers
from allocation.config import Settings
from allocation.domain import commands
from allocation.domain.model import OrderLine
from allocation.service_layer.handlers import EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import Envelope, Source, Wanted
from tests.conftest import random_batchref, random_orderid, random_sku


def test_products_lines_inbox_ids_and_waiting_skus_are_looked_up_together_and_answered_alike(
    engine: Engine, settings: Settings, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    bus = MessageBus(uow_factory, command_handlers(settings), EVENT_HANDLERS)
    sku, waits, held, fresh = random_sku(), random_sku(), random_orderid(), random_orderid()
    seen, unseen = f"m-{held}", f"m-{fresh}"
    bus.handle(commands.CreateBatch(random_batchref(), sku, 100, None))
    bus.handle(commands.Allocate(held, sku, 3), Envelope(seen))
    parked = Envelope(f"id:allocate:{fresh}", source=Source("allocate", 0, 1))
    assert bus.handle(commands.Allocate(fresh, waits, 1), parked).waiting  # no product yet

    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.startswith("PREPARE"):  # once per connection
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        with uow_factory() as uow:
            uow.prefetch(
                Wanted(
                    skus=frozenset({sku, waits}),
                    lines=frozenset({(sku, held), (sku, fresh)}),
                    message_ids=frozenset({seen, unseen}),
                )
            )
            looked_up = list(sent)
            product = uow.products.get(sku)
            assert product is not None
            absent = uow.products.get(waits)  # no batch yet: looked up, and not found
            lines = product.batches[0]._allocations
            answers = (
                OrderLine(held, sku, 3) in lines,
                OrderLine(fresh, sku, 3) in lines,
                uow.inbox.record(seen),
                uow.inbox.record(unseen),
                uow.waiting.holds(waits),
                uow.waiting.holds(sku),
                absent,
                (product.version_number, [b.purchased_quantity for b in product.batches]),
            )
            after = sent[len(looked_up) :]
    finally:
        event.remove(engine, "before_cursor_execute", note)
        # The parked order would expire in the shared database, and another test's sweep
        # would reject it there (tests/integration/test_waiting.py counts what it sweeps).
        with engine.begin() as connection:
            connection.execute(delete(waiting_commands).where(waiting_commands.c.sku == waits))

    assert answers == (True, False, False, True, True, False, None, (2, [100]))
    assert len(looked_up) == 1, looked_up
    assert "allocation_prefetch" in looked_up[0]
    assert after == []  # every answer came from the prefetch


def test_products_built_from_the_prefetch_write_back_as_loaded_ones(
    engine: Engine, settings: Settings, uow_factory: Callable[[], SqlAlchemyUnitOfWork]
) -> None:
    """A prefetched product is built from its rows, not loaded by the ORM: its new batch, its
    changed quantity, its lines and its version are written all the same."""
    bus = MessageBus(uow_factory, command_handlers(settings), EVENT_HANDLERS)
    sku, first, second = random_sku(), random_batchref(), random_batchref()
    bus.handle(commands.CreateBatch(first, sku, 10, None))
    held, moved = random_orderid(), random_orderid()
    bus.handle(commands.Allocate(held, sku, 6), Envelope(f"m-{held}"))

    group = [
        (commands.Allocate(moved, sku, 3), Envelope(f"m-{moved}")),  # the prefetch loads it
        (commands.CreateBatch(second, sku, 20, None), Envelope(f"m-{second}")),
        (commands.ChangeBatchQuantity(first, 5), Envelope(f"m-{first}-5")),
    ]
    bus.handle_many(group)

    with engine.connect() as connection:
        stored = connection.execute(
            select(batches.c.reference, batches.c.purchased_quantity, batches.c.version)
            .where(batches.c.sku == sku)
            .order_by(batches.c.id)
        ).all()
        totals = dict(
            connection.execute(
                select(batches.c.reference, batches.c.allocated_quantity).where(
                    batches.c.sku == sku
                )
            ).all()
        )
        lines = connection.execute(
            select(allocations.c.orderid, batches.c.reference)
            .join(batches, batches.c.id == allocations.c.batch_id)
            .where(allocations.c.sku == sku)
            .order_by(allocations.c.orderid)
        ).all()
        version = connection.execute(
            select(products.c.version_number).where(products.c.sku == sku)
        ).scalar_one()
    # The first batch shrank to 5: the 6 held went to the new batch, the 3 stayed.
    assert stored == [(first, 5, 2), (second, 20, 1)]
    assert sorted(lines) == sorted([(moved, first), (held, second)])
    assert totals == {first: 3, second: 6}
    assert version == 6  # two batches, two allocations, one change, one reallocation
