"""A group's lookups besides its products go in one statement, each answer to its adapter."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, delete, event

from allocation.adapters.database import SqlAlchemyUnitOfWork
from allocation.adapters.tables import waiting_commands
from allocation.bootstrap import command_handlers
from allocation.config import Settings
from allocation.domain import commands
from allocation.domain.model import OrderLine
from allocation.service_layer.handlers import EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import Envelope, Source, Wanted
from tests.conftest import random_batchref, random_orderid, random_sku


def test_lines_inbox_ids_and_waiting_skus_are_looked_up_together_and_answered_alike(
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
            lines = product.batches[0]._allocations
            answers = (
                OrderLine(held, sku, 3) in lines,
                OrderLine(fresh, sku, 3) in lines,
                uow.inbox.record(seen),
                uow.inbox.record(unseen),
                uow.waiting.holds(waits),
                uow.waiting.holds(sku),
            )
            after = sent[len(looked_up) :]
    finally:
        event.remove(engine, "before_cursor_execute", note)
        # The parked order would expire in the shared database, and another test's sweep
        # would reject it there (tests/integration/test_waiting.py counts what it sweeps).
        with engine.begin() as connection:
            connection.execute(delete(waiting_commands).where(waiting_commands.c.sku == waits))

    assert answers == (True, False, False, True, True, False)
    assert len(looked_up) == 2, looked_up  # the products, then everything else
    assert "allocation_prefetch_rows" in looked_up[1]
    assert after == []  # every answer came from the prefetch
