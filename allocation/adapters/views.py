"""The read model in PostgreSQL: which batch holds each line of an order."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from allocation.adapters.ports import AbstractAllocationsView, AllocationView
from allocation.adapters.tables import allocations_view as view


class SqlAllocationsView(AbstractAllocationsView):
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self._session.execute(
            insert(view)
            .values(orderid=orderid, sku=sku, batchref=batchref)
            .on_conflict_do_nothing()
        )

    def remove(self, orderid: str, sku: str, batchref: str) -> None:
        self._session.execute(
            delete(view).where(
                view.c.orderid == orderid, view.c.sku == sku, view.c.batchref == batchref
            )
        )

    def for_order(self, orderid: str) -> list[AllocationView]:
        rows = self._session.execute(
            select(view.c.orderid, view.c.sku, view.c.batchref)
            .where(view.c.orderid == orderid)
            .order_by(view.c.sku, view.c.batchref)
        )
        return [AllocationView(*row) for row in rows]
