"""A commit's row writes go to PostgreSQL in one round trip, and lose nothing doing so."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Connection, Engine, event, select, text
from sqlalchemy.exc import DBAPIError

from allocation.adapters import tables
from allocation.adapters.database import make_engine
from allocation.adapters.outbox_publishing import fetch_pending
from allocation.adapters.pg_arrays import with_literal_arrays
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.config import Settings
from allocation.domain import commands
from allocation.domain.model import OrderLine
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import ConcurrencyConflict, Envelope
from tests.conftest import random_batchref, random_sku

UowFactory = Callable[[], SqlAlchemyUnitOfWork]


@pytest.fixture
def bus(uow_factory: UowFactory) -> MessageBus:
    return MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS, max_attempts=1)


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    yield sent
    event.remove(engine, "before_cursor_execute", note)


def test_an_allocation_sends_its_rows_version_check_and_commit_in_one_round_trip(
    bus: MessageBus, statements: list[str]
) -> None:
    sku = random_sku()
    bus.handle(commands.CreateBatch(random_batchref(), sku, 100, None))
    bus.handle(commands.Allocate("order-0", sku, 1), Envelope("m-0"))  # prepares what it uses
    statements.clear()

    bus.handle(commands.Allocate("order-1", sku, 1), Envelope("m-1"))

    writes = [s for s in statements if s.startswith(("UPDATE", "INSERT", "EXECUTE"))]
    reads = ("_prefetch ", "_lines_held ", "_waiting_skus ", "_inbox_found ", "_products ")
    sent = [w for w in writes if not any(name in w for name in reads)]
    assert len(sent) == 1, sent
    script = sent[0]
    for part in ("lines_insert", "batches_totals", "view_insert", "inbox_insert"):
        assert part in script
    assert script.index("outbox_lock_keys") < script.index("outbox_insert")
    # The server judges the version check, so the COMMIT follows it in the same string.
    *_, check, end = (part.strip() for part in script.split(";\n"))
    assert check.startswith("EXECUTE allocation_products_versions"), script
    assert end == "COMMIT", script
    # And the transaction began with the group's lookup, in its round trip.
    (lookup,) = [s for s in statements if "allocation_prefetch" in s]
    assert lookup.startswith("BEGIN ISOLATION LEVEL REPEATABLE READ;\nEXECUTE"), lookup


class Left(NamedTuple):
    """What units of work left of one sku, and of one inbound message."""

    held: list[str]  # the orderids of the sku's lines held
    allocated: int  # its batch's allocated total
    events: list[Any]  # the payloads of its outbox rows
    inbox: list[str]  # the message's inbox ids


def left_of(engine: Engine, sku: str, message_id: str) -> Left:
    with engine.connect() as connection:
        held = connection.execute(
            select(tables.allocations.c.orderid).where(tables.allocations.c.sku == sku)
        ).scalars()
        allocated = connection.execute(
            select(tables.batches.c.allocated_quantity).where(tables.batches.c.sku == sku)
        ).scalar_one()
        events = connection.execute(
            select(tables.outbox.c.payload).where(tables.outbox.c.key == sku)
        ).scalars()
        inbox = connection.execute(
            select(tables.inbox.c.message_id).where(tables.inbox.c.message_id == message_id)
        ).scalars()
        return Left(list(held), int(allocated), list(events), list(inbox))


def test_a_version_check_failing_at_the_end_of_the_script_rolls_back_the_rows_before_it(
    engine: Engine, uow_factory: UowFactory, bus: MessageBus
) -> None:
    sku = random_sku()
    bus.handle(commands.CreateBatch(random_batchref(), sku, 100, None))

    def commit_after_the_version_moved() -> None:
        with uow_factory() as uow:
            assert uow.begin_message(Envelope("m-stale"))
            product = uow.products.get(sku)
            assert product is not None
            product.allocate(OrderLine("stale-order", sku, 5))
            # The stored version moves after the read (as a writer of a weaker isolation
            # might): the version check's UPDATE, last in the script, matches no row.
            uow.session.execute(
                text("UPDATE products SET version_number = version_number + 10 WHERE sku = :s"),
                {"s": sku},
            )
            uow.commit()

    with pytest.raises(ConcurrencyConflict):
        commit_after_the_version_moved()

    assert left_of(engine, sku, "m-stale") == ([], 0, [], [])


def test_values_with_quotes_percent_signs_and_backslashes_arrive_as_written(
    engine: Engine, bus: MessageBus
) -> None:
    sku = random_sku() + "-%s-%(x)s-'q'-\\n-\"d\""
    orderid = "o'; DROP TABLE outbox; --%%"
    bus.handle(commands.CreateBatch(random_batchref(), sku, 100, None))

    bus.handle(commands.Allocate(orderid, sku, 3), Envelope("m-%s-'1'"))

    left = left_of(engine, sku, "m-%s-'1'")
    assert left.held == [orderid]
    (payload,) = left.events
    payload = payload if isinstance(payload, dict) else json.loads(payload)
    assert (payload["orderid"], payload["sku"]) == (orderid, sku)
    assert left.inbox == ["m-%s-'1'"]


def test_a_statement_failing_in_the_script_rolls_back_the_whole_unit(
    engine: Engine, uow_factory: UowFactory, bus: MessageBus
) -> None:
    sku = random_sku()
    bus.handle(commands.CreateBatch(random_batchref(), sku, 100, None))

    def race() -> None:
        with uow_factory() as racing:
            assert racing.begin_message(Envelope("m-raced"))  # not seen yet
            product = racing.products.get(sku)
            assert product is not None
            product.allocate(OrderLine("lost-order", sku, 5))
            with uow_factory() as other:  # records the same inbound id first
                assert other.begin_message(Envelope("m-raced"))
                other.commit()
            # The inbox's INSERT fails on its unique key, in the script, after the rows.
            racing.commit()

    with pytest.raises(ConcurrencyConflict):
        race()

    # Nothing of the raced unit; the inbox id is the other unit's, which committed it.
    assert left_of(engine, sku, "m-raced") == ([], 0, [], ["m-raced"])


def test_a_prepared_statement_outlives_a_rollback_and_is_prepared_again_on_a_new_connection(
    engine: Engine, settings: Settings
) -> None:
    own = make_engine(settings.sqlalchemy_url, pool_size=1, pre_ping=False)
    probe = Prepared(
        "allocation_test_probe",
        "SELECT CAST(:ids AS uuid[]), CAST(:n AS integer)",
        types={"ids": "text[]"},
    )
    ids = ["0b4a8c1e-54f4-4d0c-9d2e-1f1a7f0a9b11"]
    with own.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert run(connection, probe, {"ids": ids, "n": 1}).one() == ([uuid.UUID(ids[0])], 1)
        connection.rollback()  # PREPARE is not undone: the next run only executes
        assert run(connection, probe, {"ids": [], "n": 2}).one() == ([], 2)
        connection.rollback()
    with engine.begin() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(DBAPIError), own.connect() as connection:  # the dropped one, once
        run(connection, probe, {"ids": ids, "n": 3})
    with own.connect() as connection:  # a new connection: prepared anew
        assert run(connection, probe, {"ids": ids, "n": 4}).one()[1] == 4
    own.dispose()


def test_the_relays_caught_up_read_is_prepared_and_its_generic_plan_walks_the_pending_index(
    engine: Engine,
) -> None:
    def prepared(connection: Connection) -> set[str]:
        query = "SELECT name FROM pg_prepared_statements"
        return set(connection.exec_driver_sql(query).scalars())

    with engine.connect() as connection:  # a pooled connection: others' may be there already
        fetch_pending(connection, 250)
        caught_up = prepared(connection)
        fetch_pending(connection, 250, in_flight=list(range(1, 20)))
        excepting = prepared(connection)
        # The limit is in the statement: the generic plan reads the first pending rows in id
        # order from their index, whatever the backlog, rather than sorting all of it.
        plan = "\n".join(
            connection.exec_driver_sql("EXPLAIN EXECUTE allocation_outbox_pending_250").scalars()
        )
    assert "allocation_outbox_pending_250" in caught_up
    # With ids in flight (a backlog, read while the previous chunk is marked) the ids go as a
    # literal, which PostgreSQL looks rows up in by hash; a prepared statement's array would
    # be a parameter, compared with each id in turn (25,000 rows/s fell to 1,900): that read
    # prepares nothing.
    assert excepting == caught_up
    assert "ix_outbox_pending" in plan, plan
    assert "Sort Key: o.id" not in plan, plan


ARRAYS: dict[str, tuple[str, list[object]]] = {
    "texts": (
        "text",
        ['a"b', "c\\d", "e'f", "", "NULL", None, "x,y}{", " sp ", "ü€", "\\\"'", "{}"],
    ),
    "only_texts": ("text", ['a"b', "c\\d", "e'f", "", "NULL", "x,y}{", "ü€", '\\"', "{}"]),
    "one_text": ("text", ['"']),
    "ints": ("bigint", [0, -1, 2**40, None]),
    "only_ints": ("bigint", [0, -1, 2**40]),
    "floats": ("float8", [0.5, -1e-05, 1e300, None]),
    "uuids": ("uuid", [uuid.uuid4(), str(uuid.uuid4()), None]),
    "moments": (
        "timestamptz",
        [datetime(2026, 11, 28, 20, 1, 2, 345678, tzinfo=UTC), None],
    ),
    "days": ("date", [date(2026, 2, 28), None]),
    "flags": ("boolean", [True, False, None]),
    "payloads": ("jsonb", [json.dumps({"q": 'he said "hi"\\', "n": [1, None]}), None]),
    "empty": ("text", []),
}


def test_an_array_literal_reads_back_as_the_list_psycopg2_would_have_sent(
    engine: Engine,
) -> None:
    sql = " AND ".join(
        f"CAST(%(l_{name})s AS {kind}[]) IS NOT DISTINCT FROM CAST(%(p_{name})s AS {kind}[])"
        for name, (kind, _) in ARRAYS.items()
    )
    params = {f"p_{name}": values for name, (_, values) in ARRAYS.items()}
    literals = with_literal_arrays({f"l_{n}": values for n, (_, values) in ARRAYS.items()})
    assert all(isinstance(value, str) for value in literals.values())
    with engine.connect() as connection:
        assert connection.exec_driver_sql(f"SELECT {sql}", {**params, **literals}).scalar()


def test_a_list_of_anything_else_is_left_to_psycopg2() -> None:
    nested = [[1, 2], [3, 4]]
    assert with_literal_arrays({"nested": nested, "one": 1}) == {"nested": nested, "one": 1}
