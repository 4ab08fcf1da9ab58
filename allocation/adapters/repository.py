"""Products in PostgreSQL through the SQLAlchemy session of the unit of work."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from allocation.adapters import orm
from allocation.adapters.ports import AbstractRepository
from allocation.adapters.tables import batches
from allocation.domain import model


class SqlAlchemyRepository(AbstractRepository):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def _add(self, product: model.Product) -> None:
        self.session.add(product)

    def _get(self, sku: str) -> model.Product | None:
        return self.session.get(model.Product, sku)

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        query = select(model.Product).join(model.Batch).where(batches.c.reference == ref)
        return self.session.execute(query).scalars().one_or_none()

    def flush(self) -> None:
        """Write every seen product: the ORM rows (checking versions), then the batches' lines."""
        self.session.flush()
        for product in self.seen:
            orm.write_allocations(self.session, product)
