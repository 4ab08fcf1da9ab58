"""Events: facts that happened in the domain, named in the past tense.

``product_version`` is the event's place in its sku's sequence: the product
numbers the events it raises 1, 2, 3, ... with no gap (``Product.event_sequence``),
so a reader of several topics can put one sku's events back in order and see a
missing one. Envelope data (event id, timestamps, causation, correlation) is not
part of an event; the unit of work and the relay add it.
"""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base of every domain event; an event has any number of handlers."""


@dataclass(frozen=True)
class Allocated(Event):
    orderid: str
    sku: str
    qty: int
    batchref: str
    product_version: int | None = None


@dataclass(frozen=True)
class Deallocated(Event):
    orderid: str
    sku: str
    qty: int
    batchref: str
    product_version: int | None = None


@dataclass(frozen=True)
class OutOfStock(Event):
    sku: str
    orderid: str | None = None
    qty: int | None = None
    product_version: int | None = None


@dataclass(frozen=True)
class CommandRejected(Event):
    """A command the current state refused (``errors.Rejection``): news for its sender.

    Not one of a product's events: it changes nothing, so it takes no place in the
    sku's sequence. ``key`` is the command's own key (its topic's message key);
    the ``source_*`` fields say which Kafka message it was (None for HTTP).
    """

    command_type: str
    key: str
    reason: str
    message: str
    command: str  # the command's fields as JSON, as its sender wrote them
    sku: str | None = None
    current_version: int | None = None
    correlation_id: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
