"""Consumer offsets in PostgreSQL: the truth of where each consumer group reads next.

Kafka's own pattern for offsets kept outside Kafka: the consumer saves each
partition's next offset in the transaction that applied the messages before it,
and seeks there when the partition is assigned. A database restored to an
earlier point brings back the offsets of that point, so the consumers read again
exactly what the restored data lacks. Kafka's committed offsets are still
written, for lag monitoring and the usual tools, but are only a fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import Connection, Engine, delete, select, text, tuple_
from sqlalchemy.orm import Session

from allocation.adapters.tables import consumer_offsets
from allocation.service_layer.ports import AbstractOffsets, ConsumedOffset

Partition = tuple[str, int]
"""(topic, partition)"""


class SqlOffsets(AbstractOffsets):
    """Writes in the unit of work's own transaction.

    Last writer wins, never the greatest: a partition's previous owner finishing
    its last poll after the new owner's first can only move the offset back,
    which re-reads messages the inbox absorbs; never forward past one unapplied.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def save(self, offsets: Sequence[ConsumedOffset]) -> None:
        if offsets:
            write(self._session.connection(), offsets)


# Arrays in, one statement whatever the number of partitions: the same SQL every poll,
# where a multi-row VALUES was compiled anew for each count of partitions.
_UPSERT = text(
    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
    "SELECT * FROM unnest(CAST(:groups AS text[]), CAST(:topics AS text[]), "
    "CAST(:partitions AS integer[]), CAST(:offsets AS bigint[])) "
    "ON CONFLICT (consumer_group, topic, partition) "
    "DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()"
)


def write(connection: Connection, offsets: Sequence[ConsumedOffset]) -> None:
    """Upsert these offsets (one statement)."""
    connection.execute(
        _UPSERT,
        {
            "groups": [o.group for o in offsets],
            "topics": [o.topic for o in offsets],
            "partitions": [o.partition for o in offsets],
            "offsets": [o.next_offset for o in offsets],
        },
    )


def stored(
    connection: Connection, group: str, partitions: Iterable[Partition]
) -> dict[Partition, int]:
    """The stored next offset of each of these partitions that has one."""
    wanted = list(partitions)
    if not wanted:
        return {}
    rows = connection.execute(
        select(
            consumer_offsets.c.topic, consumer_offsets.c.partition, consumer_offsets.c.next_offset
        )
        .where(consumer_offsets.c.consumer_group == group)
        .where(tuple_(consumer_offsets.c.topic, consumer_offsets.c.partition).in_(wanted))
    )
    return {(row.topic, row.partition): row.next_offset for row in rows}


def of_group(connection: Connection, group: str) -> dict[Partition, int]:
    """Every stored next offset of ``group``."""
    rows = connection.execute(
        select(
            consumer_offsets.c.topic, consumer_offsets.c.partition, consumer_offsets.c.next_offset
        ).where(consumer_offsets.c.consumer_group == group)
    )
    return {(row.topic, row.partition): row.next_offset for row in rows}


def forget(connection: Connection, group: str, topics: Iterable[str]) -> int:
    """Delete ``group``'s offsets of these topics (a topic recreated starts afresh)."""
    result = connection.execute(
        delete(consumer_offsets)
        .where(consumer_offsets.c.consumer_group == group)
        .where(consumer_offsets.c.topic.in_(list(topics)))
    )
    return int(result.rowcount)


def reader(engine: Engine | None, group: str) -> Callable[[list[Partition]], dict[Partition, int]]:
    """Reads ``group``'s stored offsets; with no database (fakes), there are none."""

    def read(partitions: list[Partition]) -> dict[Partition, int]:
        if engine is None:
            return {}
        with engine.connect() as connection:
            return stored(connection, group, partitions)

    return read
