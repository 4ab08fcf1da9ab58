"""What operators and retention see and do with the outbox: its backlog, the rows the relay
parked (retried or skipped by hand), and published rows pruned by age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from allocation.adapters.retention import Expiry, cutoff, delete_chunk
from allocation.adapters.tables import outbox

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
