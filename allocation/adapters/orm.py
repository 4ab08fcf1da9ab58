"""How the domain classes map onto the tables; the domain itself knows nothing of it.

A batch's allocations are not an ORM relationship: loading a product must not
load every line it ever allocated. Each loaded batch gets a ``SqlAllocations``
that asks the database about one line at a time and writes its changes when
the unit of work flushes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session, registry, relationship
from sqlalchemy.orm.attributes import set_attribute, set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from allocation.adapters.allocations import AllocationsStore, SqlAllocations
from allocation.adapters.tables import batches, metadata, products
from allocation.domain import model

mapper_registry = registry(metadata=metadata)


def start_mappers() -> None:
    """Map the domain classes onto the tables; idempotent, called by bootstrap."""
    if inspect(model.Product, raiseerr=False) is not None:
        return
    mapper_registry.map_imperatively(
        model.Batch,
        batches,
        properties={
            "_id": batches.c.id,
            "_purchased_quantity": batches.c.purchased_quantity,
            # Read at load to seed SqlAllocations, which writes it back (tables.py).
            "_stored_allocated_quantity": batches.c.allocated_quantity,
        },
    )
    mapper_registry.map_imperatively(
        model.Product,
        products,
        properties={
            # The domain's version_number is a plain attribute; the stored one is
            # mapped apart and written by save_versions, all products in one statement.
            "_stored_version": products.c.version_number,
            "batches": relationship(model.Batch, lazy="selectin", order_by=batches.c.id),
        },
    )
    event.listen(model.Product, "load", _init_loaded_product)
    event.listen(model.Batch, "load", _init_loaded_batch)


def batch_id(batch: model.Batch) -> int:
    identity = inspect(batch).identity
    if identity is None:
        raise ValueError(f"{batch!r} has not been flushed")
    return int(identity[0])


def store_for(session: Session) -> AllocationsStore:
    store = session.info.get("allocations_store")
    if store is None:
        store = session.info["allocations_store"] = AllocationsStore(session)
    return store


def stage_allocations(session: Session, product: model.Product) -> None:
    """After the ORM flush: stage each batch's new and released lines with the store."""
    store = store_for(session)
    for batch in product.batches:
        allocations = batch._allocations
        if isinstance(allocations, SqlAllocations):
            allocations.write()
        else:  # a batch created in this unit of work: its lines are all new
            batch._allocations = SqlAllocations.adopt(store, batch_id(batch), allocations)


def _init_loaded_product(product: model.Product, _context: Any) -> None:
    product.events = []
    product.version_number = int(inspect(product).dict["_stored_version"])


def stage_new_product(product: model.Product) -> None:
    """A product about to be inserted is stored with the version it has now."""
    set_attribute(product, "_stored_version", product.version_number)


# Optimistic concurrency for many products at once: each row changes only if it
# still has the version this unit of work read.
_SAVE_VERSIONS = text(
    "UPDATE products SET version_number = v.new "
    "FROM unnest(CAST(:skus AS text[]), CAST(:read AS integer[]), CAST(:new AS integer[])) "
    "AS v(sku, read, new) "
    "WHERE products.sku = v.sku AND products.version_number = v.read"
)


def save_versions(session: Session, changed: Iterable[model.Product]) -> None:
    """Write the new version of every changed product; StaleDataError if one moved meanwhile."""
    rows = []
    for product in changed:
        stored = inspect(product).dict.get("_stored_version")
        if stored is not None and stored != product.version_number:
            rows.append((product.sku, stored, product.version_number))
    if not rows:
        return
    skus, read, new = (list(column) for column in zip(*rows, strict=True))
    result = session.connection().execute(_SAVE_VERSIONS, {"skus": skus, "read": read, "new": new})
    if result.rowcount != len(rows):
        raise StaleDataError(
            f"{len(rows) - result.rowcount} of {len(rows)} products changed since they were read"
        )
    for product in changed:
        set_committed_value(product, "_stored_version", product.version_number)


def _init_loaded_batch(batch: model.Batch, context: Any) -> None:
    stored = int(inspect(batch).dict["_stored_allocated_quantity"])
    batch._allocations = SqlAllocations(store_for(context.session), batch_id(batch), stored)
