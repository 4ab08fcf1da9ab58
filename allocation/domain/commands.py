"""Commands: requests to change the system, named in the imperative."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


class Command:
    """Base of every command; a command has exactly one handler."""


@dataclass(frozen=True)
class CreateBatch(Command):
    ref: str
    sku: str
    qty: int
    eta: date | None = None


@dataclass(frozen=True)
class Allocate(Command):
    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class ChangeBatchQuantity(Command):
    """Set a batch's quantity; with ``expected_version``, only if the batch is still at it."""

    ref: str
    qty: int
    expected_version: int | None = None
