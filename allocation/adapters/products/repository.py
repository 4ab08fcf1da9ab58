"""Products in PostgreSQL through the SQLAlchemy session of the unit of work."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from sqlalchemy import Select, bindparam, inspect, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_attribute, set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from allocation.adapters.batched_writes import write_checked
from allocation.adapters.products.lines import AllocationsStore, SqlAllocations
from allocation.adapters.products.mapping import batch_id
from allocation.adapters.tables import batches, products
from allocation.domain import model
from allocation.service_layer.ports import AbstractRepository

# Optimistic concurrency for many products at once: each row changes only if it
# still has the version this unit of work read.
# Not prepared (``prepared``): a generic plan would not know how few rows the arrays hold,
# and scans a small products table where the planner, told the rows, uses its index.
_SAVE_VERSIONS = text(
    "UPDATE products SET version_number = v.new, event_sequence = v.events "
    "FROM unnest(CAST(:skus AS text[]), CAST(:read AS integer[]), CAST(:new AS integer[]), "
    "CAST(:events AS integer[])) AS v(sku, read, new, events) "
    "WHERE products.sku = v.sku AND products.version_number = v.read",
)


@cache
def _products_query() -> Select[model.Product]:
    """Products by sku, built once (after the mappers started): its compiled form is cached."""
    return select(model.Product).where(products.c.sku.in_(bindparam("skus", expanding=True)))


class SqlProductRepository(AbstractRepository):
    """Loads products ready for the domain and writes them back at flush."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.lines = AllocationsStore(session)
        # Every product handed out, by sku: held here, since the session's identity
        # map alone would let a prefetched product be collected before it is asked for.
        self._ready: dict[str, model.Product] = {}

    def _add(self, product: model.Product) -> None:
        set_attribute(product, "_stored_version", product.version_number)
        set_attribute(product, "_stored_event_sequence", product.event_sequence)
        self._ready[product.sku] = product
        self.session.add(product)

    def _get(self, sku: str) -> model.Product | None:
        if sku in self._ready:
            return self._ready[sku]
        return self._readied(self.session.get(model.Product, sku))

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        query = select(model.Product).join(model.Batch).where(batches.c.reference == ref)
        return self._readied(self.session.execute(query).unique().scalars().one_or_none())

    def prefetch(self, skus: Iterable[str], lines: Iterable[tuple[str, str]] = ()) -> None:
        """Load these products with their batches, and where these lines are held: two queries."""
        wanted = list(set(skus) - set(self._ready))
        if wanted:
            found = self.session.execute(_products_query(), {"skus": wanted})
            for product in found.unique().scalars():
                self._readied(product)
        self.lines.prefetch(lines)

    def _readied(self, product: model.Product | None) -> model.Product | None:
        """A loaded product as the domain expects it; the ORM does not run ``__init__``."""
        if product is None or product.sku in self._ready:
            return product if product is None else self._ready[product.sku]
        product.events = []
        product.version_number = int(inspect(product).dict["_stored_version"])
        product.event_sequence = int(inspect(product).dict["_stored_event_sequence"])
        for batch in product.batches:
            stored = int(inspect(batch).dict["_stored_allocated_quantity"])
            batch._allocations = SqlAllocations(self.lines, batch_id(batch), stored)
        self._ready[product.sku] = product
        return product

    def flush(self) -> None:
        """Write every seen product: ORM rows, versions (checked), then the batches' lines."""
        self.session.flush()
        self._save_versions()
        for product in self.seen:
            for batch in product.batches:
                self._stage_lines(batch)
        self.lines.flush()

    def _save_versions(self) -> None:
        """Write each changed product's version; StaleDataError if one moved meanwhile.

        The check reads the statement's row count only: it goes last with the commit's other
        writes (``batched_writes``), and its check runs before the commit."""
        changed = []
        for product in self.seen:
            stored = inspect(product).dict.get("_stored_version")
            if stored is not None and stored != product.version_number:
                changed.append((product, stored))
        if not changed:
            return
        params = {
            "skus": [p.sku for p, _ in changed],
            "read": [stored for _, stored in changed],
            "new": [p.version_number for p, _ in changed],
            # Every event moves the version too (see Product), so this is never left behind.
            "events": [p.event_sequence for p, _ in changed],
        }

        def check(rowcount: int) -> None:
            if rowcount != len(changed):
                raise StaleDataError(
                    f"{len(changed) - rowcount} of {len(changed)} products changed "
                    "since they were read"
                )
            for product, _ in changed:
                set_committed_value(product, "_stored_version", product.version_number)
                set_committed_value(product, "_stored_event_sequence", product.event_sequence)

        write_checked(self.session, _SAVE_VERSIONS, params, check)

    def _stage_lines(self, batch: model.Batch) -> None:
        allocations = batch._allocations
        if isinstance(allocations, SqlAllocations):
            allocations.write()
        else:  # a batch created in this unit of work: its lines are all new
            batch._allocations = SqlAllocations.adopt(self.lines, batch_id(batch), allocations)
