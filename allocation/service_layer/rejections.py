"""Rejections: a command the current state refuses becomes an event for its sender.

``reject`` is the one way to turn a ``Rejection`` into a ``CommandRejected``
event in the outbox. The message bus calls it in the rejected command's own
transaction, beside its inbox record, so a redelivery finds the record and
rejects nothing twice; any other path that gives up on a command (an order
that waited too long for its sku, say) calls it with that command's envelope.
"""

from __future__ import annotations

import dataclasses
import json

from allocation.domain import commands, events
from allocation.domain.errors import Rejection, StaleVersion
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, Envelope


def command_key(command: commands.Command) -> str:
    """The key a command's topic partitions it by: its sku, or a batch's reference."""
    if isinstance(command, commands.ChangeBatchQuantity):
        return command.ref
    if isinstance(command, commands.CreateBatch | commands.Allocate):
        return command.sku
    raise TypeError(f"no key for command {type(command).__name__}")


def reject(
    command: commands.Command,
    error: Rejection,
    uow: AbstractUnitOfWork,
    envelope: Envelope | None = None,
) -> events.CommandRejected:
    """Stage in ``uow`` the ``CommandRejected`` event telling why ``command`` was refused.

    ``envelope`` is the command's own (by default the message ``uow`` is handling).
    """
    envelope = envelope or uow.envelope
    source = envelope.source if envelope else None
    event = events.CommandRejected(
        command_type=type(command).__name__,
        key=command_key(command),
        reason=error.reason,
        message=str(error),
        command=json.dumps(dataclasses.asdict(command), default=str, sort_keys=True),  # type: ignore[call-overload]
        sku=_sku_of(command, uow),
        current_version=error.current_version if isinstance(error, StaleVersion) else None,
        correlation_id=envelope.correlation_id if envelope else None,
        source_topic=source.topic if source else None,
        source_partition=source.partition if source else None,
        source_offset=source.offset if source else None,
    )
    uow.emit(event, envelope)
    return event


def _sku_of(command: commands.Command, uow: AbstractUnitOfWork) -> str | None:
    if isinstance(command, commands.ChangeBatchQuantity):
        product = uow.products.get_by_batchref(command.ref)
        return product.sku if product is not None else None
    return getattr(command, "sku", None)
