"""How the domain classes map onto the tables; the domain itself knows nothing of it.

A batch's allocations are not an ORM relationship: loading a product must not
load every line it ever allocated (see ``lines.py``). A product read as rows with
a group's other lookups is built here as the ORM would load it (``stored_product``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import configure_mappers, make_transient_to_detached, registry, relationship
from sqlalchemy.orm.attributes import set_committed_value

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
    configure_mappers()  # now, not at the first query: ``stored_product`` may come first


def batch_id(batch: model.Batch) -> int:
    """The database id of a batch that has been inserted or loaded."""
    identity = inspect(batch).identity
    if identity is None:
        raise ValueError(f"{batch!r} has not been flushed")
    return int(identity[0])


def stored_batch(
    batch_id: int,
    reference: str,
    sku: str,
    purchased: int,
    allocated: int,
    version: int,
    eta: date | None,
) -> model.Batch:
    """A batch built from its row as the ORM loads one: detached, every mapped column set,
    no change pending. Its allocations are the repository's to set."""
    batch: model.Batch = _detached(
        model.Batch,
        _id=batch_id,
        reference=reference,
        sku=sku,
        _purchased_quantity=purchased,
        _stored_allocated_quantity=allocated,
        eta=eta,
        version=version,
    )
    return batch


def stored_product(
    sku: str, version: int, event_sequence: int, batches: list[model.Batch]
) -> model.Product:
    """A product built from its row and its batches' (``stored_batch``, in id order), as the
    ORM loads one: detached, no change pending. ``Session.add`` makes it persistent; the
    repository readies it for the domain, as it does a product the ORM loaded.

    Building from the rows of a lookup the unit of work sends anyway costs a fraction of
    the ORM's query and result processing for the same product (``prefetch``)."""
    product: model.Product = _detached(
        model.Product, sku=sku, _stored_version=version, _stored_event_sequence=event_sequence
    )
    set_committed_value(product, "batches", batches)  # an instrumented list, as loaded
    return product


def _detached(cls: type[Any], **columns: Any) -> Any:
    """An instance of a mapped class made as the ORM's loading makes one (no ``__init__``),
    its mapped columns set, then detached: its identity known, nothing pending."""
    instance = _new(cls)()
    instance.__dict__.update(columns)
    make_transient_to_detached(instance)
    return instance


def _new(cls: type[Any]) -> Any:
    """The mapped class's constructor of instances without ``__init__`` (after
    ``start_mappers``)."""
    return inspect(cls).class_manager.new_instance
