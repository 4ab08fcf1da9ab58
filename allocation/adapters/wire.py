"""Explicit converters between wire records (Avro dicts) and domain messages.

Each topic of the contract carries one record type; the record's field names
are the book's wire names (``batchref`` on ChangeBatchQuantity, where the
domain command says ``ref``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from allocation.config import Settings
from allocation.domain import commands, events, model

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"

Record = dict[str, Any]


def create_batch_from_record(record: Mapping[str, Any]) -> commands.CreateBatch:
    eta = record.get("eta")
    if eta is not None and not isinstance(eta, date):
        raise TypeError(f"eta must be a date, got {eta!r}")
    return commands.CreateBatch(ref=record["ref"], sku=record["sku"], qty=record["qty"], eta=eta)


def allocate_from_record(record: Mapping[str, Any]) -> commands.Allocate:
    return commands.Allocate(orderid=record["orderid"], sku=record["sku"], qty=record["qty"])


def change_batch_quantity_from_record(record: Mapping[str, Any]) -> commands.ChangeBatchQuantity:
    return commands.ChangeBatchQuantity(ref=record["batchref"], qty=record["qty"])


def command_to_record(command: commands.Command) -> Record:
    if isinstance(command, commands.ChangeBatchQuantity):
        return {"batchref": command.ref, "qty": command.qty}
    return dataclasses.asdict(command)  # type: ignore[call-overload, no-any-return]


def event_to_record(event: events.Event) -> Record:
    return dataclasses.asdict(event)  # type: ignore[call-overload, no-any-return]


def check_command(command: commands.Command) -> None:
    """Apply the domain's field rules now, so a client hears of bad input before sending it."""
    if isinstance(command, commands.CreateBatch):
        model.Batch(command.ref, command.sku, command.qty, command.eta)
    elif isinstance(command, commands.Allocate):
        model.OrderLine(command.orderid, command.sku, command.qty)
    elif isinstance(command, commands.ChangeBatchQuantity):
        model.require_text("batchref", command.ref)
        model.require_quantity("qty", command.qty, allow_zero=True)


EVENT_TYPES: dict[str, type[events.Event]] = {
    cls.__name__: cls for cls in (events.Allocated, events.Deallocated, events.OutOfStock)
}


def event_from_payload(event_type: str, payload: Mapping[str, Any]) -> events.Event:
    """Rebuild a domain event from its outbox row."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise ValueError(f"unknown event type {event_type!r}")
    return cls(**payload)


COMMAND_DECODERS: dict[str, Callable[[Mapping[str, Any]], commands.Command]] = {
    "CreateBatch": create_batch_from_record,
    "Allocate": allocate_from_record,
    "ChangeBatchQuantity": change_batch_quantity_from_record,
}


def topic_records(settings: Settings) -> dict[str, str]:
    """The record type each topic carries (its schema is ``schemas/<record>.avsc``)."""
    return {
        settings.topic_add_batch: "CreateBatch",
        settings.topic_allocate: "Allocate",
        settings.topic_batch_quantity: "ChangeBatchQuantity",
        settings.topic_line_allocated: "Allocated",
        settings.topic_line_deallocated: "Deallocated",
        settings.topic_out_of_stock: "OutOfStock",
    }


def load_schema(record_name: str, schemas_dir: Path = SCHEMAS_DIR) -> Record:
    path = schemas_dir / f"{record_name}.avsc"
    schema: Record = json.loads(path.read_text())
    return schema


def full_name(schema: Mapping[str, Any]) -> str:
    namespace = schema.get("namespace")
    return f"{namespace}.{schema['name']}" if namespace else str(schema["name"])
