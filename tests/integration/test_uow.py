"""The SQLAlchemy unit of work on the real PostgreSQL: atomicity, inbox, outbox, versions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from allocation.adapters import tables
from allocation.adapters.database import make_engine
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.config import Settings
from allocation.domain import commands, events
from allocation.domain.errors import StaleVersion
from allocation.domain.model import OrderLine
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, ConcurrencyConflict, Envelope
from tests.conftest import random_batchref, random_orderid, random_sku

UowFactory = Callable[[], SqlAlchemyUnitOfWork]


@pytest.fixture
def bus(uow_factory: UowFactory) -> MessageBus:
    return MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS, max_attempts=10)


def count(engine: Engine, table: tables.Table, **where: object) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def product_version(engine: Engine, sku: str) -> int:
    with engine.connect() as connection:
        query = select(tables.products.c.version_number).where(tables.products.c.sku == sku)
        return int(connection.execute(query).scalar_one())


def test_a_committed_allocation_is_stored(engine: Engine, bus: MessageBus) -> None:
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    bus.handle(commands.CreateBatch(ref, sku, 100, None))
    assert bus.handle(commands.Allocate(orderid, sku, 10)).result == ref

    with engine.connect() as connection:
        row = connection.execute(
            select(tables.batches.c.allocated_quantity).where(tables.batches.c.reference == ref)
        ).one()
    assert row.allocated_quantity == 10
    assert count(engine, tables.allocations, orderid=orderid, sku=sku, qty=10) == 1
    assert count(engine, tables.allocations_view, orderid=orderid, batchref=ref) == 1


def test_uncommitted_work_is_rolled_back(engine: Engine, uow_factory: UowFactory) -> None:
    sku, ref = random_sku(), random_batchref()
    with uow_factory() as uow:
        COMMAND_HANDLERS[commands.CreateBatch](commands.CreateBatch(ref, sku, 10, None), uow)
    assert count(engine, tables.batches, reference=ref) == 0


def test_an_error_after_the_domain_change_leaves_no_state_and_no_outbox_row(
    engine: Engine, uow_factory: UowFactory, bus: MessageBus
) -> None:
    sku, ref = random_sku(), random_batchref()
    bus.handle(commands.CreateBatch(ref, sku, 100, None))

    def explode(event: events.Allocated, uow: AbstractUnitOfWork) -> None:
        raise RuntimeError("after the domain change")

    failing = MessageBus(uow_factory, COMMAND_HANDLERS, {events.Allocated: [explode]})
    with pytest.raises(RuntimeError):
        failing.handle(commands.Allocate(random_orderid(), sku, 5), Envelope("m-explode-" + sku))

    assert count(engine, tables.allocations, sku=sku) == 0
    assert count(engine, tables.outbox, key=sku) == 0
    assert count(engine, tables.inbox, message_id="m-explode-" + sku) == 0
    assert product_version(engine, sku) == 1


def test_commit_writes_each_integration_event_to_the_outbox(
    engine: Engine, bus: MessageBus
) -> None:
    sku, early, late, orderid = random_sku(), random_batchref(), random_batchref(), random_orderid()
    bus.handle(commands.CreateBatch(early, sku, 10, None))
    bus.handle(commands.CreateBatch(late, sku, 10, date.today()))
    bus.handle(commands.Allocate(orderid, sku, 10), Envelope("m-a-" + sku, correlation_id="c-1"))
    bus.handle(commands.ChangeBatchQuantity(early, 5), Envelope("m-q-" + sku))
    bus.handle(commands.Allocate(random_orderid(), sku, 50), Envelope("m-o-" + sku))

    with engine.connect() as connection:
        rows = connection.execute(
            select(tables.outbox).where(tables.outbox.c.key == sku).order_by(tables.outbox.c.id)
        ).all()
    assert [(r.event_type, r.topic, r.causation_id) for r in rows] == [
        ("Allocated", "line-allocated", "m-a-" + sku),
        ("Deallocated", "line-deallocated", "m-q-" + sku),
        ("Allocated", "line-allocated", "m-q-" + sku),
        ("OutOfStock", "out-of-stock", "m-o-" + sku),
    ]
    assert rows[0].payload == {
        "orderid": orderid,
        "sku": sku,
        "qty": 10,
        "batchref": early,
        "product_version": 1,
    }
    assert [r.payload["product_version"] for r in rows] == [1, 2, 3, 4]
    assert rows[0].correlation_id == "c-1"
    assert rows[2].payload["batchref"] == late
    assert len({r.event_id for r in rows}) == 4
    assert all(r.published_at is None for r in rows)


def test_the_event_sequence_and_batch_versions_survive_the_database(
    bus: MessageBus, uow_factory: UowFactory
) -> None:
    sku, ref = random_sku(), random_batchref()
    bus.handle(commands.CreateBatch(ref, sku, 10, None))
    bus.handle(commands.Allocate(random_orderid(), sku, 4))
    bus.handle(commands.ChangeBatchQuantity(ref, 3, expected_version=1))
    stale = bus.handle(commands.ChangeBatchQuantity(ref, 9, expected_version=1))
    assert isinstance(stale.rejection, StaleVersion)
    bus.handle(commands.Allocate(random_orderid(), sku, 1))

    with uow_factory() as uow:
        product = uow.products.get(sku)
        assert product is not None
        assert (product.event_sequence, product.batches[0].version) == (4, 2)


def test_a_redelivered_message_changes_nothing(engine: Engine, bus: MessageBus) -> None:
    sku, ref = random_sku(), random_batchref()
    bus.handle(commands.CreateBatch(ref, sku, 100, None))
    message = commands.Allocate(random_orderid(), sku, 10)

    first = bus.handle(message, Envelope("allocate:0:" + sku))
    again = bus.handle(message, Envelope("allocate:0:" + sku))

    assert (first.duplicate, again.duplicate) == (False, True)
    assert count(engine, tables.outbox, key=sku) == 1
    assert product_version(engine, sku) == 2


def test_two_transactions_from_the_same_stale_read_cannot_both_commit(
    engine: Engine, bus: MessageBus, uow_factory: UowFactory
) -> None:
    sku, ref = random_sku(), random_batchref()
    bus.handle(commands.CreateBatch(ref, sku, 100, None))
    both_have_read = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    def allocate_after_both_read(orderid: str) -> None:
        try:
            with uow_factory() as uow:
                product = uow.products.get(sku)
                assert product is not None
                both_have_read.wait()
                product.allocate(OrderLine(orderid, sku, 10))
                uow.commit()
            outcomes.append("committed")
        except ConcurrencyConflict:
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=allocate_after_both_read, args=(random_orderid(),))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["committed", "conflict"]
    assert product_version(engine, sku) == 2
    assert count(engine, tables.allocations, sku=sku) == 1


def test_concurrent_allocations_through_the_bus_all_land_once(
    engine: Engine, bus: MessageBus
) -> None:
    sku, ref = random_sku(), random_batchref()
    bus.handle(commands.CreateBatch(ref, sku, 1000, None))
    orderids = [random_orderid(i) for i in range(8)]
    errors: list[BaseException] = []

    def allocate(orderid: str) -> None:
        try:
            bus.handle(commands.Allocate(orderid, sku, 3))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=allocate, args=(o,)) for o in orderids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert product_version(engine, sku) == 1 + len(orderids)
    assert count(engine, tables.allocations, sku=sku) == len(orderids)
    assert count(engine, tables.outbox, key=sku) == len(orderids)
    with engine.connect() as connection:
        allocated = connection.execute(
            select(tables.batches.c.allocated_quantity).where(tables.batches.c.reference == ref)
        ).scalar_one()
    assert allocated == 3 * len(orderids)


def test_allocations_survive_into_a_new_unit_of_work(
    bus: MessageBus, uow_factory: UowFactory
) -> None:
    sku, ref = random_sku(), random_batchref()
    bus.handle(commands.CreateBatch(ref, sku, 20, None))
    line = OrderLine(random_orderid(), sku, 8)
    bus.handle(commands.Allocate(line.orderid, sku, line.qty))

    with uow_factory() as uow:
        product = uow.products.get(sku)
        assert product is not None
        batch = product.batches[0]
        assert batch.holds(line)
        assert batch.available_quantity == 12
        assert product.allocate(line) == ref
        assert product.events == []


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM batches WHERE reference = :ref",
        "UPDATE batches SET id = id + 1000000 WHERE reference = :ref",
        "TRUNCATE batches CASCADE",
    ],
)
def test_a_batch_holding_lines_is_never_deleted_nor_renumbered(
    engine: Engine, settings: Settings, bus: MessageBus, statement: str
) -> None:
    """Allocations refer to batches by id with no foreign key (migration 0014): what the
    foreign key guaranteed, PostgreSQL still enforces, even for the owner role."""
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    bus.handle(commands.CreateBatch(ref, sku, 100, None))
    bus.handle(commands.Allocate(orderid, sku, 10))
    owner = make_engine(settings.migration_sqlalchemy_url, pool_size=1)
    try:
        with (
            pytest.raises(DBAPIError, match="batches are never deleted"),
            owner.begin() as connection,
        ):
            connection.execute(text(statement), {"ref": ref})
    finally:
        owner.dispose()
    assert count(engine, tables.batches, reference=ref) == 1
    assert count(engine, tables.allocations, orderid=orderid, sku=sku) == 1
