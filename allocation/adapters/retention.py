"""Pruning by age, in chains of short deletes, for the tables that would otherwise grow.

One chunk is one short transaction: it deletes up to ``limit`` of the oldest expired
rows, found through the table's index on its time stamp, by their physical address
(ctid), and says the newest stamp it deleted. The next chunk of a chain starts its
index scan at that stamp, so it does not walk again over the index entries of the
rows already deleted, which stay until a vacuum clears them: without that, each chunk
would scan every dead entry of the chain so far, and a long chain would slow down
quadratically while the table waits for its vacuum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, Table, func, select, text

from allocation.adapters.tables import RETENTION_LOCK

# Where a chain starts: before any stamp the tables can hold.
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Expiry:
    """A table pruned by age, and the indexed column that dates its rows."""

    table: Table
    stamp: Column[datetime]

    def chunk_sql(self) -> str:
        table, stamp = self.table.name, self.stamp.name
        return f"""
            WITH doomed AS (
                SELECT ctid FROM {table}
                WHERE {stamp} < :before AND {stamp} >= :since
                ORDER BY {stamp} LIMIT :limit
            ), gone AS (
                DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
                RETURNING {stamp}
            )
            SELECT count(*) AS deleted, max({stamp}) AS last FROM gone
        """


@dataclass(frozen=True)
class Chunk:
    """What one delete of a chain removed; ``last``: the newest stamp among those rows."""

    deleted: int
    last: datetime | None


def delete_chunk(
    connection: Connection,
    expiry: Expiry,
    before: datetime,
    since: datetime | None = None,
    limit: int = 10_000,
) -> Chunk:
    """Delete up to ``limit`` of the oldest rows stamped before ``before`` (and not before
    ``since``, where the previous chunk of the chain ended).

    Rows share a stamp (one transaction's inbox rows share its ``now()``), so the next
    chunk starts at ``last`` itself, not after it: a chunk may end inside such a group.
    """
    row = connection.execute(
        text(expiry.chunk_sql()),
        {"before": before, "since": since or _BEGINNING, "limit": limit},
    ).one()
    return Chunk(int(row.deleted), row.last)


def cutoff(connection: Connection, older_than: timedelta) -> datetime:
    """The database's now() less the retention: rows stamped before it are expired."""
    return connection.execute(select(func.now() - older_than)).scalar_one()


def oldest(connection: Connection, expiry: Expiry) -> datetime | None:
    """The oldest stamp in the table (an index's first entry)."""
    return connection.execute(select(func.min(expiry.stamp))).scalar_one()


def try_lock(connection: Connection) -> bool:
    """Whether this transaction may prune: one pruner at a time, however many relays run."""
    return bool(
        connection.execute(
            text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
            {"a": RETENTION_LOCK[0], "b": RETENTION_LOCK[1]},
        ).scalar_one()
    )
