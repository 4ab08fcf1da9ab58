"""The prepared lookups' generic plans when they are made on empty, never analyzed tables.

A new database's first poll plans each prepared statement while its tables are empty, and
PostgreSQL keeps that plan until autovacuum first analyzes them (a minute or more). A
lookup written as ``= ANY($ids)`` was then a sequential scan that compared every row with
every id of the poll: over an inbox of 20,000 rows, 104 ms for 500 ids, where a join with
the unnested ids takes 2 ms on the same plan and 1 ms once the table is analyzed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from allocation.adapters import inbox, prefetch, waiting
from allocation.adapters.database import make_engine
from allocation.adapters.pg_arrays import with_literal_arrays
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.products import lines
from allocation.bootstrap import upgrade_schema
from allocation.config import Settings
from tests.conftest import fresh_database

# A row filter comparing each row with a parameter array, element by element.
EACH_ROW_WITH_EACH_ID = re.compile(r"Filter: .*= ANY \(\$\d+\)")

LOOKUPS = {
    "prefetch": (
        prefetch._ROWS,
        {"skus": ["s"], "orderids": ["o"], "ids": ["m-1", "m-2"], "waiting": ["s"]},
    ),
    "inbox": (inbox._FOUND, {"ids": ["m-1", "m-2"]}),
    "waiting": (waiting._HOLDING, {"skus": ["s", "t"]}),
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
def test_a_lookup_planned_on_empty_tables_never_compares_each_row_with_each_id(
    new_database: Engine, name: str
) -> None:
    statement, params = LOOKUPS[name]
    with new_database.connect() as connection:
        run(connection, statement, params).all()  # planned now, once, for any values
        plan = _plan(connection, statement, params)
    assert "Seq Scan" in plan or "Index" in plan, plan  # a plan was read at all
    assert not EACH_ROW_WITH_EACH_ID.search(plan), plan


def _plan(connection: Any, statement: Prepared, params: dict[str, Any]) -> str:
    explain = f"EXPLAIN {statement.execute_sql}"
    return "\n".join(connection.exec_driver_sql(explain, with_literal_arrays(params)).scalars())
