"""How the domain classes map onto the tables; the domain itself knows nothing of it.

A batch's allocations are not an ORM relationship: loading a product must not
load every line it ever allocated. Each loaded batch gets a ``SqlAllocations``
that asks the database about one line at a time and writes its changes when
the unit of work flushes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, registry, relationship

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
        version_id_col=products.c.version_number,
        # The domain increments version_number itself; the ORM only checks it.
        version_id_generator=False,
        properties={
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


def write_allocations(session: Session, product: model.Product) -> None:
    """After the ORM flush: write each batch's new and released lines."""
    store = store_for(session)
    for batch in product.batches:
        allocations = batch._allocations
        if isinstance(allocations, SqlAllocations):
            allocations.write()
        else:  # a batch created in this unit of work: its lines are all new
            batch._allocations = SqlAllocations.adopt(store, batch_id(batch), allocations)


def _init_loaded_product(product: model.Product, _context: Any) -> None:
    product.events = []


def _init_loaded_batch(batch: model.Batch, context: Any) -> None:
    stored = int(inspect(batch).dict["_stored_allocated_quantity"])
    batch._allocations = SqlAllocations(store_for(context.session), batch_id(batch), stored)
