"""Products in PostgreSQL through the SQLAlchemy session of the unit of work."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from allocation.adapters import orm
from allocation.adapters.ports import AbstractRepository
from allocation.adapters.tables import batches, products
from allocation.domain import model


class SqlAlchemyRepository(AbstractRepository):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._prefetched: dict[str, model.Product] = {}

    def _add(self, product: model.Product) -> None:
        orm.stage_new_product(product)
        self.session.add(product)

    def _get(self, sku: str) -> model.Product | None:
        return self._prefetched.get(sku) or self.session.get(model.Product, sku)

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        query = select(model.Product).join(model.Batch).where(batches.c.reference == ref)
        return self.session.execute(query).scalars().one_or_none()

    def prefetch(self, skus: Iterable[str]) -> None:
        """Load these products and their batches in one round trip (no lines: see orm.py)."""
        wanted = list(set(skus) - set(self._prefetched))
        if wanted:
            # Held here: the session's identity map alone would let them be collected.
            query = select(model.Product).where(products.c.sku.in_(wanted))
            for product in self.session.execute(query).scalars():
                self._prefetched[product.sku] = product

    def flush(self) -> None:
        """Write every seen product: the ORM rows (checking versions), then the batches' lines."""
        self.session.flush()
        orm.save_versions(self.session, self.seen)
        for product in self.seen:
            orm.stage_allocations(self.session, product)
        orm.store_for(self.session).flush()
