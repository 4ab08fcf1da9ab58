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
    ref: str
    qty: int
