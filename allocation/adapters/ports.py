"""The ports the service layer depends on; each has a fake and a PostgreSQL adapter.

The fakes live in ``tests/fakes.py``; one contract test suite per port runs
against both (``tests/contract/``).
"""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from allocation.domain import events, model


@dataclass(frozen=True)
class OutboxEntry:
    """An integration event ready to leave the service, with its envelope."""

    event: events.Event
    topic: str
    key: str
    occurred_at: datetime
    causation_id: str | None = None
    correlation_id: str | None = None
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def event_type(self) -> str:
        return type(self.event).__name__


class AbstractRepository(abc.ABC):
    """Products, the aggregates, by sku or by the reference of one of their batches.

    ``seen`` holds every product added or fetched in this unit of work, so the
    unit of work can collect the events they raised.
    """

    def __init__(self) -> None:
        self.seen: set[model.Product] = set()

    def add(self, product: model.Product) -> None:
        self._add(product)
        self.seen.add(product)

    def get(self, sku: str) -> model.Product | None:
        product = self._get(sku)
        if product is not None:
            self.seen.add(product)
        return product

    def get_by_batchref(self, ref: str) -> model.Product | None:
        product = self._get_by_batchref(ref)
        if product is not None:
            self.seen.add(product)
        return product

    @abc.abstractmethod
    def _add(self, product: model.Product) -> None: ...

    @abc.abstractmethod
    def _get(self, sku: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _get_by_batchref(self, ref: str) -> model.Product | None: ...


class AbstractInbox(abc.ABC):
    """Identities of inbound messages already applied, written in the applying transaction."""

    @abc.abstractmethod
    def record(self, message_id: str) -> bool:
        """Record the message; False when it was recorded before (a duplicate)."""


class AbstractOutbox(abc.ABC):
    """Integration events waiting for the relay, written in the transaction that raised them."""

    @abc.abstractmethod
    def add(self, entries: list[OutboxEntry]) -> None:
        """Store the entries, in order, as part of the current transaction."""


@dataclass(frozen=True)
class AllocationView:
    orderid: str
    sku: str
    batchref: str


class AbstractAllocationsView(abc.ABC):
    """The read model: which batch holds each line of an order."""

    @abc.abstractmethod
    def add(self, orderid: str, sku: str, batchref: str) -> None: ...

    @abc.abstractmethod
    def remove(self, orderid: str, sku: str, batchref: str) -> None: ...

    @abc.abstractmethod
    def for_order(self, orderid: str) -> list[AllocationView]:
        """Every line of the order that is allocated, sorted by sku."""
