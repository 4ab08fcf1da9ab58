"""The prepared lookups' generic plans when they are made on empty, never analyzed tables.

A new database's first poll plans each prepared statement while its tables are empty, and
PostgreSQL keeps that plan until autovacuum first analyzes them (a minute or more). A
lookup of many keys written as ``= ANY($ids)`` was then a sequential scan comparing every
row with every id (over an inbox of 20,000 rows, 104 ms for 500 ids), and one written as
a join with the unnested keys a sequential scan hashed against them (0.5 ms for the 8 keys
of an API group over 4,000 allocations). Each key now probes the index on its own
(``adapters/prepared``). Every other statement the service prepares (inserts, the outbox's
locks, the relay's caught-up read) is planned the same way here, so that the next one to
read a growing table whole on a new database fails a test.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from allocation import adapters
from allocation.adapters import inbox, outbox_publishing, prefetch, waiting
from allocation.adapters.database import make_engine
from allocation.adapters.pg_arrays import with_literal_arrays
from allocation.adapters.prepared import Prepared, prepare, run
from allocation.adapters.products import lines, repository
from allocation.bootstrap import upgrade_schema
from allocation.config import Settings
from allocation.entrypoints.relay_policy import RelayPolicy
from tests.conftest import fresh_database

# A statement reading the whole of a table that grows with the commands applied, or with
# the skus and batches created.
GROWING_TABLE_READ_WHOLE = re.compile(
    r"Seq Scan on (allocations|allocations_view|inbox|outbox|waiting_commands|products|batches)\b"
)

LOOKUPS = {
    "prefetch": (
        prefetch._ROWS,
        {
            "products": ["s", "t"],
            "skus": ["s"],
            "orderids": ["o"],
            "ids": ["m-1", "m-2"],
            "waiting": ["s"],
        },
    ),
    "products": (repository._PRODUCTS, {"products": ["s", "t"]}),
    "inbox": (inbox._FOUND, {"ids": ["m-1", "m-2"]}),
    "waiting": (waiting._HOLDING, {"waiting": ["s", "t"]}),
    "held lines": (lines._HELD, {"skus": ["s"], "orderids": ["o"]}),
}


@pytest.fixture
def new_database(settings: Settings) -> Iterator[Engine]:
    """The service's engine on a database just migrated: its tables never analyzed."""
    with fresh_database(settings) as fresh:
        upgrade_schema(fresh)
        engine = make_engine(fresh.sqlalchemy_url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_a_lookup_planned_on_empty_tables_probes_the_index_for_each_key(
    new_database: Engine, name: str
) -> None:
    statement, params = LOOKUPS[name]
    with new_database.connect() as connection:
        run(connection, statement, params).all()  # planned now, once, for any values
        plan = _plan(connection, statement, params)
    assert "Index" in plan, plan
    assert not GROWING_TABLE_READ_WHOLE.search(plan), plan


def _plan(connection: Any, statement: Prepared, params: dict[str, Any]) -> str:
    explain = f"EXPLAIN {statement.execute_sql}"
    return "\n".join(connection.exec_driver_sql(explain, with_literal_arrays(params)).scalars())


def _every_prepared() -> dict[str, Prepared]:
    """Every statement the service prepares: the adapters' module-level ones, and the relay's
    caught-up read (built per chunk size; the relay's default here)."""
    found: dict[str, Prepared] = {}
    for info in pkgutil.walk_packages(adapters.__path__, f"{adapters.__name__}."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Prepared):
                found[value.name] = value
    pending = outbox_publishing._pending_statement(RelayPolicy().chunk_size)
    found[pending.name] = pending
    return found


PREPARED = _every_prepared()


@pytest.mark.parametrize("name", sorted(PREPARED))
def test_no_prepared_statement_planned_on_empty_tables_reads_a_growing_table_whole(
    new_database: Engine, name: str
) -> None:
    statement = PREPARED[name]
    # A generic plan is the same for any values: EXPLAIN it with every parameter NULL.
    nulls = dict.fromkeys(re.findall(r"%\((\w+)\)s", statement.execute_sql))
    with new_database.connect() as connection:
        prepare(connection, statement)
        plan = _plan(connection, statement, nulls)
    assert not GROWING_TABLE_READ_WHOLE.search(plan), plan
