"""The ports the service layer depends on; adapters implement them.

Each port has an in-memory fake (``tests/fakes.py``) and a PostgreSQL adapter
(``allocation/adapters/``); one contract suite per port (``tests/contracts.py``)
runs against both.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from allocation.domain import commands, events, model

if TYPE_CHECKING:
    from allocation.service_layer.unit_of_work import Envelope


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
    traceparent: str | None = None

    @property
    def event_type(self) -> str:
        """The event's class name, as the ``event_type`` header carries it."""
        return type(self.event).__name__


class AbstractRepository(abc.ABC):
    """Products, the aggregates, by sku or by the reference of one of their batches.

    ``seen`` holds every product added or fetched in this unit of work, so the
    unit of work can collect the events they raised.
    """

    def __init__(self) -> None:
        self.seen: set[model.Product] = set()
        # Handed out since the unit of work last collected events: only these can hold new
        # ones, since a handler changes the products it got. Looking at every seen product
        # after each message took a poll of 500 commands over 200 skus 100,000 steps, a
        # tenth of the consumer's time.
        self._handed: list[model.Product] = []

    def take_handed(self) -> list[model.Product]:
        """The products added or got since the last call, in that order (repeats kept)."""
        handed, self._handed = self._handed, []
        return handed

    def add(self, product: model.Product) -> None:
        """Store a new product when the unit of work commits."""
        self._add(product)
        self.seen.add(product)
        self._handed.append(product)

    def get(self, sku: str) -> model.Product | None:
        """The product of ``sku``, or None when it has no batch yet."""
        product = self._get(sku)
        if product is not None:
            self.seen.add(product)
            self._handed.append(product)
        return product

    def get_by_batchref(self, ref: str) -> model.Product | None:
        """The product owning the batch ``ref``, or None when no batch has it."""
        product = self._get_by_batchref(ref)
        if product is not None:
            self.seen.add(product)
            self._handed.append(product)
        return product

    def prefetch(  # noqa: B027 (optional: a fake has nothing to gain)
        self, skus: Iterable[str], lines: Iterable[tuple[str, str]] = ()
    ) -> None:
        """These products, and where these (sku, order id) lines are held, will be asked
        for soon: load them in bulk if that helps."""

    @abc.abstractmethod
    def _add(self, product: model.Product) -> None: ...

    @abc.abstractmethod
    def _get(self, sku: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _get_by_batchref(self, ref: str) -> model.Product | None: ...


class AbstractInbox(abc.ABC):
    """Identities of inbound messages already applied, written in the applying transaction."""

    @abc.abstractmethod
    def record(self, message_id: str, aliases: Iterable[str] = ()) -> bool:
        """Record the message; False when it, or one of its ``aliases``, was recorded before
        (a duplicate). Aliases are only looked up, never recorded."""

    def prefetch(self, message_ids: Iterable[str]) -> None:  # noqa: B027 (optional)
        """These ids will be recorded soon: look them up in bulk if that helps."""


@dataclass(frozen=True)
class StoredResponse:
    """The answer given to a request, kept so that a retry of it gets the same answer.

    ``fingerprint`` identifies the request's content: a retry with the same key
    but another content is a client's mistake, not a retry.
    """

    fingerprint: str
    status: int
    body: Any


class AbstractResponses(abc.ABC):
    """Responses to requests with an idempotency key, written with the command they answer."""

    @abc.abstractmethod
    def save(self, message_id: str, response: StoredResponse) -> None:
        """Keep the response of the message, as part of the current transaction."""

    @abc.abstractmethod
    def get(self, message_id: str) -> StoredResponse | None:
        """The response kept for the message, or None."""


class AbstractOutbox(abc.ABC):
    """Integration events waiting for the relay, written in the transaction that raised them."""

    @abc.abstractmethod
    def add(self, entries: list[OutboxEntry]) -> None:
        """Store the entries, in order, as part of the current transaction."""


@dataclass(frozen=True)
class AllocationView:
    """One row of the read model: the batch holding one order's line of a sku."""

    orderid: str
    sku: str
    batchref: str


class AbstractAllocationsView(abc.ABC):
    """The read model: which batch holds each line of an order."""

    @abc.abstractmethod
    def add(self, orderid: str, sku: str, batchref: str) -> None:
        """The order's line of ``sku`` is now held by ``batchref``."""

    @abc.abstractmethod
    def remove(self, orderid: str, sku: str, batchref: str) -> None:
        """The order's line of ``sku`` no longer is held by ``batchref``."""

    @abc.abstractmethod
    def for_order(self, orderid: str) -> list[AllocationView]:
        """Every line of the order that is allocated, sorted by sku."""


@dataclass(frozen=True)
class ConsumedOffset:
    """Where a consumer group reads next in one partition: everything before it is applied."""

    group: str
    topic: str
    partition: int
    next_offset: int


class AbstractOffsets(abc.ABC):
    """Consumer offsets kept with the data: saved in the transaction that applied the messages,
    so a database restored to an earlier point brings back the offsets that go with it."""

    @abc.abstractmethod
    def save(self, offsets: Sequence[ConsumedOffset]) -> None:
        """Set these partitions' next offsets (written at commit, with everything else)."""


@dataclass(frozen=True)
class WaitingCommand:
    """An order read before its sku had any batch, with the envelope it arrived in."""

    command: commands.Allocate
    envelope: Envelope


class AbstractWaiting(abc.ABC):
    """Orders waiting for their sku's first batch, in arrival order, written in the unit of
    work's transaction: taken (deleted) by the transaction that applies or rejects them."""

    def prefetch(self, skus: Iterable[str]) -> None:  # noqa: B027 (optional)
        """``holds`` will be asked about these skus soon: look them up in bulk if that helps."""

    @abc.abstractmethod
    def holds(self, sku: str) -> bool:
        """Whether any order waits for ``sku``."""

    @abc.abstractmethod
    def add(self, waiting: WaitingCommand, wait: timedelta) -> None:
        """Keep the order, behind any other of its sku, until it is taken or ``wait`` passes."""

    @abc.abstractmethod
    def take(self, sku: str) -> list[WaitingCommand]:
        """Remove and return the orders waiting for ``sku``, oldest first."""

    @abc.abstractmethod
    def take_expired(self, limit: int) -> list[WaitingCommand]:
        """Remove and return up to ``limit`` orders whose wait is over, oldest first."""

    @abc.abstractmethod
    def stranded(self, limit: int) -> list[str]:
        """Up to ``limit`` skus that have a product and still have orders waiting (their first
        batch committed beside an order parked concurrently, which it could not see)."""
