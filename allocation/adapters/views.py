"""The read model in PostgreSQL: which batch holds each line of an order.

Changes are kept in memory and written at flush, two statements at most
whatever the number of lines; a read flushes first, so it sees its own writes.
"""

from __future__ import annotations

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import read, write
from allocation.adapters.prepared import Prepared
from allocation.adapters.tables import allocations_view as view
from allocation.service_layer.ports import AbstractAllocationsView, AllocationView

_INSERT = Prepared(
    "allocation_view_insert",
    "INSERT INTO allocations_view (orderid, sku, batchref) "
    "SELECT * FROM unnest(CAST(:orderids AS text[]), CAST(:skus AS text[]), CAST(:refs AS text[])) "
    "ON CONFLICT DO NOTHING",
)


class SqlAllocationsView(AbstractAllocationsView):
    """The ``allocations_view`` table, changed at flush."""

    def __init__(self, session: Session) -> None:
        self._session = session
        # (orderid, sku, batchref) -> whether the row should exist after the flush
        self._pending: dict[tuple[str, str, str], bool] = {}

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self._pending[(orderid, sku, batchref)] = True

    def remove(self, orderid: str, sku: str, batchref: str) -> None:
        self._pending[(orderid, sku, batchref)] = False

    def for_order(self, orderid: str) -> list[AllocationView]:
        self.flush()
        rows = read(self._session).execute(
            select(view.c.orderid, view.c.sku, view.c.batchref)
            .where(view.c.orderid == orderid)
            .order_by(view.c.sku, view.c.batchref)
        )
        return [AllocationView(*row) for row in rows]

    def flush(self) -> None:
        """Write the changes noted since the last flush: a delete and an insert at most."""
        present = [key for key, exists in self._pending.items() if exists]
        absent = [key for key, exists in self._pending.items() if not exists]
        if absent:
            key = tuple_(view.c.orderid, view.c.sku, view.c.batchref)
            write(self._session, delete(view).where(key.in_(absent)))
        if present:
            orderids, skus, batchrefs = (list(column) for column in zip(*present, strict=True))
            params = {"orderids": orderids, "skus": skus, "refs": batchrefs}
            write(self._session, _INSERT, params)
        self._pending = {}
