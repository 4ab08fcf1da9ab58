"""The outbox in PostgreSQL: integration events stored with the change that raised them.

Rows of one key must become visible in the order their ids were taken, or a
relay publishing by id could put a key's events out of commit order. Each
writing transaction therefore takes a transaction-scoped advisory lock per key
(sorted, so two writers cannot deadlock) before it takes ids: a second writer of
the same key waits until the first commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import write
from allocation.adapters.pg_arrays import literal
from allocation.adapters.prepared import Prepared, prepare
from allocation.adapters.retention import Expiry, cutoff, delete_chunk
from allocation.adapters.tables import outbox
from allocation.adapters.wire import event_to_record
from allocation.service_layer.ports import AbstractOutbox, OutboxEntry

_LOCK_KEYS = Prepared(
    "allocation_outbox_lock_keys",
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
    "FROM (SELECT DISTINCT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS keys",
)


# One statement for any number of rows; WITH ORDINALITY keeps ids in the order raised.
_INSERT = Prepared(
    "allocation_outbox_insert",
    """
    INSERT INTO outbox (event_id, event_type, topic, key, payload, occurred_at,
                        causation_id, correlation_id, traceparent, schema_version)
    SELECT event_id, event_type, topic, key, payload, occurred_at, causation_id, correlation_id,
           traceparent, schema_version
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:types AS text[]), CAST(:topics AS text[]),
                CAST(:keys AS text[]), CAST(:payloads AS jsonb[]),
                CAST(:occurred AS timestamptz[]), CAST(:causes AS text[]),
                CAST(:correlations AS text[]), CAST(:traceparents AS text[]),
                CAST(:versions AS integer[]))
         WITH ORDINALITY AS rows (event_id, event_type, topic, key, payload, occurred_at,
                                  causation_id, correlation_id, traceparent, schema_version,
                                  position)
    ORDER BY position
    """,
    types={"event_ids": "text[]", "payloads": "text[]"},
)


SchemaVersions = Callable[[str], int | None]
"""The registry's version of this build's schema of a topic (``AvroCodec.version_of``)."""


class SqlOutbox(AbstractOutbox):
    """Outbox rows written with one INSERT per unit of work, after the per-key locks.

    Each row names the schema version its payload was written for (``versions``;
    without it, or when the registry holds no version of this build's schema,
    NULL: "the relay's own"), so the relay of another build encodes it as written.
    """

    def __init__(self, session: Session, versions: SchemaVersions | None = None) -> None:
        self._session = session
        self._versions = versions

    def add(self, entries: list[OutboxEntry]) -> None:
        if not entries:
            return
        keys = sorted({entry.key for entry in entries})
        write(self._session, _LOCK_KEYS, {"keys": keys})
        write(
            self._session,
            _INSERT,
            {
                "event_ids": [str(e.event_id) for e in entries],
                "types": [e.event_type for e in entries],
                "topics": [e.topic for e in entries],
                "keys": [e.key for e in entries],
                "payloads": [json.dumps(event_to_record(e.event)) for e in entries],
                "occurred": [e.occurred_at for e in entries],
                "causes": [e.causation_id for e in entries],
                "correlations": [e.correlation_id for e in entries],
                "traceparents": [e.traceparent for e in entries],
                "versions": [self._versions(e.topic) if self._versions else None for e in entries],
            },
        )


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


# Published rows by age; pending rows (published_at NULL) are never expired.
EXPIRY = Expiry(outbox, outbox.c.published_at)


def prune_published(connection: Connection, older_than: timedelta, limit: int = 10_000) -> int:
    """Delete rows published longer ago than the retention (at most ``limit`` per call)."""
    return delete_chunk(connection, EXPIRY, cutoff(connection, older_than), None, limit).deleted


@dataclass(frozen=True)
class Backlog:
    """How far the relay is behind, and what it gave up on."""

    pending: int
    retrying: int
    parked: int
    oldest_pending_age_s: float | None


# Each half matches one partial index's predicate, so only the rows that wait are read: the
# relay asks every 5 s on its publishing thread, and one scan over every published row (a
# parallel one, taking both cores) held each event behind it for 100-300 ms under load.
BACKLOG = text(
    """
    SELECT waiting.pending, waiting.retrying, held.parked, waiting.oldest
    FROM (SELECT count(*) AS pending,
                 count(*) FILTER (WHERE next_attempt_at IS NOT NULL) AS retrying,
                 extract(epoch FROM now() - min(created_at)) AS oldest
          FROM outbox WHERE published_at IS NULL AND parked_at IS NULL) AS waiting,
         (SELECT count(*) AS parked
          FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL) AS held
    """
)


def backlog(connection: Connection) -> Backlog:
    """The outbox's backlog now."""
    row = connection.execute(BACKLOG).one()
    oldest = float(row.oldest) if row.oldest is not None else None
    return Backlog(int(row.pending), int(row.retrying), int(row.parked), oldest)


def parked(connection: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Rows the relay gave up on, oldest first, with the last error."""
    rows = connection.execute(
        select(
            outbox.c.id,
            outbox.c.event_id,
            outbox.c.event_type,
            outbox.c.topic,
            outbox.c.key,
            outbox.c.attempts,
            outbox.c.last_error,
            outbox.c.parked_at,
        )
        .where(outbox.c.parked_at.is_not(None), outbox.c.published_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def unpark(connection: Connection, ids: list[int] | None) -> int:
    """Give parked rows (all, or these ids) back to the relay with a fresh count of attempts."""
    query = update(outbox).where(outbox.c.parked_at.is_not(None), outbox.c.published_at.is_(None))
    if ids is not None:
        query = query.where(outbox.c.id.in_(ids))
    result = connection.execute(
        query.values(parked_at=None, next_attempt_at=None, attempts=0, last_error=None)
    )
    return int(result.rowcount)


def skip(connection: Connection, ids: list[int]) -> int:
    """An operator gives up on these parked rows: they are never sent, and free their keys.

    A skipped row is kept, marked published with its last error saying it was skipped,
    until retention prunes it.
    """
    result = connection.execute(
        update(outbox)
        .where(
            outbox.c.id.in_(ids), outbox.c.parked_at.is_not(None), outbox.c.published_at.is_(None)
        )
        .values(
            published_at=func.now(),
            last_error=func.concat("skipped by an operator; ", outbox.c.last_error),
        )
    )
    return int(result.rowcount)
