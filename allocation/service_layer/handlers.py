"""Handlers: plain functions taking the message and the unit of work it runs in.

They never commit and never publish: the message bus owns the transaction, and
integration events leave through the outbox when it commits.
"""

from __future__ import annotations

from allocation.domain import commands, events, model
from allocation.domain.errors import DuplicateBatchRef, InvalidBatchRef, InvalidSku
from allocation.service_layer.messagebus import CommandHandler, EventHandler
from allocation.service_layer.unit_of_work import AbstractUnitOfWork
from allocation.service_layer.waiting import NO_WAITING, WAITING, Waiting, WaitingPolicy


def add_batch(cmd: commands.CreateBatch, uow: AbstractUnitOfWork) -> None:
    batch = model.Batch(cmd.ref, cmd.sku, cmd.qty, cmd.eta)
    if uow.products.get_by_batchref(cmd.ref) is not None:
        raise DuplicateBatchRef(f"batch {cmd.ref!r} already exists")
    product = uow.products.get(cmd.sku)
    if product is None:
        product = model.Product(cmd.sku, batches=[])
        uow.products.add(product)
    product.add_batch(batch)


def allocate(
    cmd: commands.Allocate, uow: AbstractUnitOfWork, waiting: WaitingPolicy = NO_WAITING
) -> str | Waiting | None:
    line = model.OrderLine(cmd.orderid, cmd.sku, cmd.qty)
    product = uow.products.get(line.sku)
    if product is None:
        if waiting.park(cmd, uow):
            return WAITING
        raise InvalidSku(f"Invalid sku {line.sku}")
    return product.allocate(line)


def change_batch_quantity(cmd: commands.ChangeBatchQuantity, uow: AbstractUnitOfWork) -> None:
    model.require_text("ref", cmd.ref)
    product = uow.products.get_by_batchref(cmd.ref)
    if product is None:
        raise InvalidBatchRef(f"no batch {cmd.ref!r}")
    product.change_batch_quantity(cmd.ref, cmd.qty, cmd.expected_version)


def reallocate(event: events.Deallocated, uow: AbstractUnitOfWork) -> None:
    product = uow.products.get(event.sku)
    if product is None:  # pragma: no cover (a deallocated line's product exists)
        raise InvalidSku(f"Invalid sku {event.sku}")
    product.allocate(model.OrderLine(event.orderid, event.sku, event.qty))


def add_allocation_to_read_model(event: events.Allocated, uow: AbstractUnitOfWork) -> None:
    uow.views.add(event.orderid, event.sku, event.batchref)


def remove_allocation_from_read_model(event: events.Deallocated, uow: AbstractUnitOfWork) -> None:
    uow.views.remove(event.orderid, event.sku, event.batchref)


COMMAND_HANDLERS: dict[type[commands.Command], CommandHandler] = {
    commands.CreateBatch: add_batch,
    commands.Allocate: allocate,
    commands.ChangeBatchQuantity: change_batch_quantity,
}

EVENT_HANDLERS: dict[type[events.Event], list[EventHandler]] = {
    events.Allocated: [add_allocation_to_read_model],
    events.Deallocated: [remove_allocation_from_read_model, reallocate],
    events.OutOfStock: [],
}
