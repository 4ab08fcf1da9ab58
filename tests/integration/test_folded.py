"""A unit of work's transaction opens and ends in its statements' round trips (``folded``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from allocation.adapters import tables
from allocation.adapters.database import make_engine, session_factory
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.bootstrap import event_routes
from allocation.config import Settings
from allocation.domain import commands
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import ConcurrencyConflict, Envelope
from tests.conftest import random_batchref, random_sku
from tests.wire import QueryCounter


@pytest.fixture
def counted(settings: Settings, engine: Engine) -> Iterator[tuple[QueryCounter, Engine]]:
    """An engine of one connection whose queries go through a ``QueryCounter``."""
    url = make_url(settings.sqlalchemy_url)
    counter = QueryCounter((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=counter.port).update_query_dict(
        {"sslmode": "disable", "gssencmode": "disable"}
    )
    proxied = make_engine(through.render_as_string(hide_password=False), pool_size=1)
    yield counter, proxied
    proxied.dispose()
    counter.close()


def bus_on(engine: Engine, settings: Settings) -> MessageBus:
    sessions: Callable[[], object] = session_factory(engine)
    routes = event_routes(settings)
    return MessageBus(
        lambda: SqlAlchemyUnitOfWork(sessions, routes),  # type: ignore[arg-type]
        COMMAND_HANDLERS,
        EVENT_HANDLERS,
        max_attempts=1,
    )


def products_named(engine: Engine, sku: str) -> list[str]:
    """The skus of the products stored as ``sku``, as another connection reads them."""
    with engine.connect() as connection:
        query = select(tables.products.c.sku).where(tables.products.c.sku == sku)
        return list(connection.execute(query).scalars())


def test_a_group_of_allocates_makes_two_round_trips_its_begin_and_commit_within_them(
    counted: tuple[QueryCounter, Engine], settings: Settings, engine: Engine
) -> None:
    counter, proxied = counted
    bus = bus_on(proxied, settings)
    skus = [random_sku() for _ in range(3)]
    for sku in skus:
        bus.handle(commands.CreateBatch(random_batchref(), sku, 100, None))
    order = iter(range(1000))
    tag = random_sku()  # the events' ids derive from the messages': unique to this test

    def group() -> list[tuple[commands.Command, Envelope]]:
        return [
            (commands.Allocate(f"o-{n}", sku, 1), Envelope(f"{tag}:{n}", deduplicate=False))
            for sku in skus
            for n in [next(order)]
        ]

    bus.handle_many(group())  # the connection prepares what the group uses, once
    before = counter.queries
    bus.handle_many(group())

    # The lookup (BEGIN in front), then the writes (COMMIT behind): psycopg2's own BEGIN
    # and COMMIT made it four.
    assert counter.queries - before == 2, [q[:60] for q in counter.sent[before:]]
    with engine.connect() as connection:  # and it committed: another connection sees it
        held = connection.execute(
            select(tables.allocations.c.orderid).where(tables.allocations.c.sku.in_(skus))
        ).scalars()
        assert sorted(held) == ["o-0", "o-1", "o-2", "o-3", "o-4", "o-5"]


def test_a_unit_that_failed_in_the_server_leaves_its_connection_ready_for_the_next(
    counted: tuple[QueryCounter, Engine], settings: Settings
) -> None:
    _, proxied = counted  # one connection: the next unit gets the same one
    bus = bus_on(proxied, settings)
    sku = random_sku()
    bus.handle(commands.CreateBatch(random_batchref(), sku, 10, None))
    uow = SqlAlchemyUnitOfWork(session_factory(proxied), event_routes(settings))
    with pytest.raises(ConcurrencyConflict), uow:  # the product exists: a unique violation
        uow.session.execute(text("INSERT INTO products (sku) VALUES (:s)"), {"s": sku})

    bus.handle(commands.Allocate("o-after", sku, 1), Envelope("m-after"))
    with proxied.connect() as connection:
        held = connection.execute(
            select(tables.allocations.c.orderid).where(tables.allocations.c.sku == sku)
        ).scalars()
        assert list(held) == ["o-after"]


def test_a_transaction_left_open_is_rolled_back_when_its_connection_returns_to_the_pool(
    counted: tuple[QueryCounter, Engine], engine: Engine
) -> None:
    _, proxied = counted
    sku = random_sku()
    with proxied.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        # Opened behind SQLAlchemy's back: it knows of no transaction to end.
        with raw.cursor() as cursor:
            cursor.execute("BEGIN; INSERT INTO products (sku) VALUES (%s)", (sku,))

    with proxied.connect() as connection:  # the same connection, from the pool
        assert connection.connection.dbapi_connection is raw
        assert raw.info.transaction_status == TRANSACTION_STATUS_IDLE  # nothing carried over
    assert products_named(engine, sku) == []


def test_a_connection_asked_for_autocommit_commits_each_statement_alone(
    counted: tuple[QueryCounter, Engine], engine: Engine
) -> None:
    counter, proxied = counted
    sku = random_sku()
    with proxied.connect() as connection:
        alone = connection.execution_options(isolation_level="AUTOCOMMIT")
        before = counter.queries
        alone.execute(text("INSERT INTO products (sku) VALUES (:s)"), {"s": sku})
        assert counter.sent[before:] == [f"INSERT INTO products (sku) VALUES ('{sku}')"]
        # Committed: another connection sees it at once.
        assert products_named(engine, sku) == [sku]
