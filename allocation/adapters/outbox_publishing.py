"""Publishing the outbox: the rows the relay sends next, marked published, or held back.

The relay reads pending rows in id order, which the writers' per-key locks make each
key's commit order (``outbox``); a row that failed holds back the later rows of its key.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, text, update

from allocation.adapters.pg_arrays import literal
from allocation.adapters.prepared import Prepared, prepare
from allocation.adapters.tables import outbox


class PendingRow(NamedTuple):
    """An outbox row the relay has yet to publish.

    A named tuple rather than a dataclass: the relay builds one per row it
    publishes, and a frozen dataclass's constructor cost more than the fetch.
    """

    id: int
    event_id: str
    event_type: str
    topic: str
    key: str
    payload: dict[str, Any]
    occurred_at: datetime
    causation_id: str | None
    correlation_id: str | None
    attempts: int
    created_at: datetime | None = None  # when the writing transaction began
    traceparent: str | None = None
    schema_version: int | None = None  # the subject's version the payload was written for


# Pending rows in commit order, except those of a key whose earlier row waits to be retried
# or was parked: a key's events never overtake one another, so a parked row holds its key
# until an operator retries it (`allocation outbox retry`) or skips it (`outbox skip`).
# The held-back keys are gathered first, from their own small indexes, so the cost stays
# that of reading the first pending rows however long the backlog (a correlated
# NOT EXISTS let the planner rescan the pending rows once per row it returned).
_PENDING = """
    WITH held AS MATERIALIZED (
        SELECT key, min(id) AS from_id FROM (
            SELECT key, id FROM outbox
            WHERE published_at IS NULL AND parked_at IS NULL
              AND next_attempt_at IS NOT NULL AND next_attempt_at > now()
            UNION ALL
            SELECT key, id FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL
        ) AS failed
        GROUP BY key
    )
    SELECT id, event_id::text, event_type, topic, key, payload::text, occurred_at,
           causation_id, correlation_id, attempts, created_at, traceparent, schema_version
    FROM outbox AS o
    WHERE published_at IS NULL AND parked_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM held WHERE held.key = o.key AND held.from_id <= o.id)
      {in_flight}
    ORDER BY id
    LIMIT {limit}
    """
# Rows sent and acknowledged whose mark has not committed yet, left out by id: exactly those,
# never "id > the last read", which would skip a row of a smaller id that committed late.
# One array literal, which PostgreSQL (15+) looks ids up in by hash: sent as text and planned
# for its value. Prepared, the array would be a parameter, which the plan compares with each
# id in turn: 5,000 ids in flight took the relay from a full outbox from 25,000 rows/s to 1,900.
_PENDING_EXCEPT = _PENDING.format(
    in_flight="AND id <> ALL(CAST(%(in_flight)s AS bigint[]))", limit="%(limit)s"
)
_PENDING_STATEMENTS: dict[int, Prepared] = {}


def _pending_statement(limit: int) -> Prepared:
    """The pending-rows query with nothing in flight, prepared: the relay's read when it has
    caught up (one per NOTIFY), whose planning took 0.2-0.7 ms, longer than running it.

    The limit is part of the statement, not a parameter: a generic plan for ``LIMIT $1``
    is costed for a tenth of the table, which a long backlog could turn into a sort of all
    of it; the relay asks with one chunk size, so that is one statement.
    """
    statement = _PENDING_STATEMENTS.get(limit)
    if statement is None:
        sql = _PENDING.format(in_flight="", limit=int(limit))
        statement = Prepared(f"allocation_outbox_pending_{int(limit)}", sql)
        _PENDING_STATEMENTS[limit] = statement
    return statement


def fetch_pending(
    connection: Connection, limit: int, in_flight: list[int] | None = None
) -> list[PendingRow]:
    """Up to ``limit`` rows to publish next, in commit order, keys held back left out, and
    the ``in_flight`` ids (acknowledged, their mark not yet committed) left out too."""
    # The relay's hot path, so the driver's own cursor and tuples: SQLAlchemy's result rows
    # cost about as much per row as everything else the relay does with it. The payloads
    # come as text and are parsed in one call for the chunk, not one call per row.
    sql: str
    params: dict[str, Any] | None
    if in_flight:
        sql, params = _PENDING_EXCEPT, {"limit": limit, "in_flight": literal(in_flight)}
    else:
        statement = _pending_statement(limit)
        prepare(connection, statement)
        sql, params = statement.execute_sql, None  # no parameters: nothing to interpolate
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    payloads = json.loads("[" + ",".join(row[5] for row in rows) + "]")
    return [
        PendingRow._make((*row[:5], payload, *row[6:]))
        for row, payload in zip(rows, payloads, strict=True)
    ]


# One array parameter whatever the number of ids, rather than a bound parameter per id
# for SQLAlchemy to expand and the server to parse.
_MARK_PUBLISHED = text(
    "UPDATE outbox SET published_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))"
)


def mark_published(connection: Connection, ids: list[int]) -> None:
    """The broker acknowledged these rows."""
    if ids:
        connection.execute(_MARK_PUBLISHED, {"ids": ids})


def record_failure(
    connection: Connection, row: PendingRow, error: str, retry_in: timedelta, park: bool
) -> None:
    """Count a failed attempt; hold the row (and its key) back, or park it for an operator."""
    connection.execute(
        update(outbox)
        .where(outbox.c.id == row.id)
        .values(
            attempts=row.attempts + 1,
            last_error=error[:4000],
            next_attempt_at=func.now() + retry_in,
            parked_at=func.now() if park else None,
        )
    )
