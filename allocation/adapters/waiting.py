"""Orders waiting for their sku's first batch, in PostgreSQL (``waiting_commands``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Connection, Row, delete, exists, func, insert, select
from sqlalchemy.orm import Session

from allocation.adapters.prepared import Prepared, run
from allocation.adapters.tables import products, waiting_commands
from allocation.domain import commands
from allocation.service_layer.ports import AbstractWaiting, WaitingCommand
from allocation.service_layer.unit_of_work import Envelope, Source

_w = waiting_commands.c
# A constant: compiled once, where a select() built per call cost more than its round trip.
# Each sku probes the index on its own (``prepared``: lookups by a list of keys).
HOLDING_FROM = (
    "FROM (SELECT DISTINCT unnest(CAST(:waiting AS text[]))) AS k(sku) CROSS JOIN LATERAL "
    "(SELECT 1 FROM waiting_commands AS w WHERE w.sku = k.sku LIMIT 1) AS w"
)
_HOLDING = Prepared("allocation_waiting_skus", f"SELECT k.sku {HOLDING_FROM}")


class SqlWaiting(AbstractWaiting):
    """Statements run at once, in the unit of work's transaction.

    Two transactions taking the same rows conflict (REPEATABLE READ): the loser
    is retried and finds them gone, so an order is never applied twice.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._checked: set[str] = set()
        self._holding: set[str] = set()

    def prefetch(self, skus: Iterable[str]) -> None:
        wanted = self.unchecked(skus)
        if wanted:
            self.note_holding(
                wanted, run(self._connection, _HOLDING, {"waiting": wanted}).scalars()
            )

    def unchecked(self, skus: Iterable[str]) -> list[str]:
        """Those of these skus not checked yet."""
        return list(set(skus) - self._checked)

    def note_holding(self, checked: Iterable[str], holding: Iterable[str]) -> None:
        """What a check of ``checked`` found: the skus orders wait for."""
        self._holding.update(holding)
        self._checked.update(checked)

    def holds(self, sku: str) -> bool:
        if sku not in self._checked:
            self.prefetch([sku])
        return sku in self._holding

    def add(self, waiting: WaitingCommand, wait: timedelta) -> None:
        command, envelope = waiting.command, waiting.envelope
        source = envelope.source
        self._connection.execute(
            insert(waiting_commands).values(
                sku=command.sku,
                orderid=command.orderid,
                qty=command.qty,
                message_id=envelope.message_id,
                correlation_id=envelope.correlation_id,
                traceparent=envelope.traceparent,
                source_topic=source.topic if source else None,
                source_partition=source.partition if source else None,
                source_offset=source.offset if source else None,
                expires_at=func.now() + wait,
            )
        )
        self._checked.add(command.sku)
        self._holding.add(command.sku)

    def take(self, sku: str) -> list[WaitingCommand]:
        self._holding.discard(sku)
        return self._take(_w.sku == sku)

    def take_expired(self, limit: int) -> list[WaitingCommand]:
        due = select(_w.id).where(_w.expires_at < func.now()).order_by(_w.id).limit(limit)
        return self._take(_w.id.in_(due.scalar_subquery()))

    def stranded(self, limit: int) -> list[str]:
        has_product = exists().where(products.c.sku == _w.sku)
        query = select(_w.sku).where(has_product).group_by(_w.sku).order_by(func.min(_w.id))
        return list(self._connection.execute(query.limit(limit)).scalars())

    def _take(self, which: object) -> list[WaitingCommand]:
        statement = delete(waiting_commands).where(which).returning(*waiting_commands.c)  # type: ignore[arg-type]
        rows = self._connection.execute(statement).all()
        return [_waiting(row) for row in sorted(rows, key=lambda r: r.id)]

    @property
    def _connection(self) -> Connection:
        return self._session.connection()


def _waiting(row: Row[tuple[object, ...]]) -> WaitingCommand:
    source = None
    if row.source_topic is not None:
        source = Source(row.source_topic, row.source_partition, row.source_offset)
    envelope = Envelope(
        message_id=row.message_id,
        correlation_id=row.correlation_id,
        traceparent=row.traceparent,
        source=source,
    )
    return WaitingCommand(commands.Allocate(row.orderid, row.sku, row.qty), envelope)


def count(connection: Connection) -> int:
    """How many orders wait, for the metrics."""
    return int(connection.execute(select(func.count()).select_from(waiting_commands)).scalar_one())
