"""Events: facts that happened in the domain, named in the past tense.

Envelope data (event id, timestamps, causation, correlation) is not part of an
event; the outbox adds it when the event is stored for publication.
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


@dataclass(frozen=True)
class Deallocated(Event):
    orderid: str
    sku: str
    qty: int
    batchref: str


@dataclass(frozen=True)
class OutOfStock(Event):
    sku: str
