"""A downstream reader as the contract promises it can be written: from the event topics alone.

It rebuilds which batch holds each order's line of each sku using nothing but the
decoded event values (no headers, no database): events are deduped by their
``event_id`` and applied per sku in ``product_version`` order, whatever topic,
partition or order they were read in. A gap in a sku's sequence means an event not
read yet; everything after the gap waits, so a half-read reallocation is never
shown as its final state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

Holding = tuple[str, str]
"""(order id, sku)."""


class ReferenceConsumer:
    """Folds Allocated, Deallocated and OutOfStock values into order lines and their batches."""

    def __init__(self) -> None:
        self.seen_ids: set[str] = set()
        self.duplicates = 0
        # Per sku: events waiting for their turn, by product_version; and the next one due.
        self._waiting: dict[str, dict[int, tuple[str, Mapping[str, Any]]]] = defaultdict(dict)
        self._next: dict[str, int] = defaultdict(lambda: 1)
        self.holdings: dict[Holding, str] = {}
        self.out_of_stock: list[Holding] = []

    def read(self, event_type: str, value: Mapping[str, Any]) -> None:
        """Take one event value, in any order; apply whatever is now in sequence."""
        event_id = str(value["event_id"])
        if event_id in self.seen_ids:
            self.duplicates += 1
            return
        self.seen_ids.add(event_id)
        sku, number = value["sku"], int(value["product_version"])
        self._waiting[sku][number] = (event_type, value)
        while self._next[sku] in self._waiting[sku]:
            kind, ready = self._waiting[sku].pop(self._next[sku])
            self._apply(kind, ready)
            self._next[sku] += 1

    def read_all(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for event_type, value in events:
            self.read(event_type, value)

    def gaps(self) -> dict[str, int]:
        """Skus with events read past a missing one: {sku: the number missing}."""
        return {sku: self._next[sku] for sku, waiting in self._waiting.items() if waiting}

    def applied_up_to(self, sku: str) -> int:
        """The last product_version applied for the sku (0 if none)."""
        return self._next[sku] - 1

    def _apply(self, event_type: str, value: Mapping[str, Any]) -> None:
        holding = (value["orderid"], value["sku"])
        if event_type == "Allocated":
            self.holdings[holding] = value["batchref"]
        elif event_type == "Deallocated":
            if self.holdings.get(holding) == value["batchref"]:
                del self.holdings[holding]
        elif event_type == "OutOfStock":
            self.out_of_stock.append(holding)
        else:
            raise ValueError(f"unknown event type {event_type!r}")
