"""How the domain classes map onto the tables; the domain itself knows nothing of it.

A batch's allocations are not an ORM relationship: loading a product must not
load every line it ever allocated (see ``lines.py``).
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.orm import registry, relationship

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
            # Read at load to seed the batch's SqlAllocations, which writes it back.
            "_stored_allocated_quantity": batches.c.allocated_quantity,
        },
    )
    mapper_registry.map_imperatively(
        model.Product,
        products,
        properties={
            # The domain's version_number is a plain attribute; the stored one is
            # mapped apart and written by the repository, all products in one statement.
            "_stored_version": products.c.version_number,
            "_stored_event_sequence": products.c.event_sequence,
            "batches": relationship(model.Batch, lazy="joined", order_by=batches.c.id),
        },
    )


def batch_id(batch: model.Batch) -> int:
    """The database id of a batch that has been inserted or loaded."""
    identity = inspect(batch).identity
    if identity is None:
        raise ValueError(f"{batch!r} has not been flushed")
    return int(identity[0])
