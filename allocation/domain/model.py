"""The allocation domain: batches of stock and the Product aggregate.

Order lines and a batch's set of lines live in ``lines.py``; they are named here
too, so the rest of the code speaks of ``model.OrderLine`` as the book does.
"""

from __future__ import annotations

from datetime import date

from allocation.domain import events
from allocation.domain.errors import InvalidBatchRef, InvalidSku, StaleVersion
from allocation.domain.lines import MAX_IDENTIFIER_BYTES as MAX_IDENTIFIER_BYTES
from allocation.domain.lines import MAX_QUANTITY as MAX_QUANTITY
from allocation.domain.lines import Allocations as Allocations
from allocation.domain.lines import AllocationSet as AllocationSet
from allocation.domain.lines import OrderLine as OrderLine
from allocation.domain.lines import release_order as release_order
from allocation.domain.lines import require_quantity as require_quantity
from allocation.domain.lines import require_text as require_text


class Batch:
    """Stock of one sku that has arrived (eta None) or is on its way.

    ``version`` counts changes to the batch's purchased quantity: 1 when created,
    one more at each change. It is what a ``ChangeBatchQuantity`` may expect, so a
    sender's compare-and-set fails only if the quantity it read was changed since;
    allocations, which move all the time, do not count (the product's
    ``version_number`` does, and would make every such command stale).
    """

    def __init__(self, ref: str, sku: str, qty: int, eta: date | None) -> None:
        self.reference = require_text("ref", ref)
        self.sku = require_text("sku", sku)
        self.eta = eta
        self._purchased_quantity = require_quantity("qty", qty)
        self.version = 1
        self._allocations: AllocationSet = Allocations()

    def __repr__(self) -> str:
        return f"<Batch {self.reference}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and other.reference == self.reference

    def __hash__(self) -> int:
        return hash(self.reference)

    @property
    def preference(self) -> tuple[bool, date, str]:
        """Sort key: warehouse stock first, then the earliest eta; ties by reference."""
        return (self.eta is not None, self.eta or date.min, self.reference)

    def holds(self, line: OrderLine) -> bool:
        return line in self._allocations

    def can_allocate(self, line: OrderLine) -> bool:
        return self.sku == line.sku and self.available_quantity >= line.qty

    def allocate(self, line: OrderLine) -> None:
        if self.can_allocate(line):
            self._allocations.add(line)

    def deallocate(self, line: OrderLine) -> None:
        self._allocations.remove(line)

    def deallocate_one(self) -> OrderLine:
        """Release the largest line, so that the fewest lines move."""
        line = self._allocations.largest()
        if line is None:
            raise ValueError(f"batch {self.reference} holds no line to deallocate")
        self._allocations.remove(line)
        return line

    def change_purchased_quantity(self, qty: int, expected_version: int | None = None) -> None:
        if expected_version is not None and expected_version != self.version:
            raise StaleVersion(
                f"batch {self.reference} is at version {self.version}, "
                f"the command expected version {expected_version}",
                current_version=self.version,
            )
        self._purchased_quantity = require_quantity("qty", qty, allow_zero=True)
        self.version += 1

    @property
    def purchased_quantity(self) -> int:
        return self._purchased_quantity

    @property
    def allocated_quantity(self) -> int:
        return self._allocations.quantity

    @property
    def available_quantity(self) -> int:
        return self._purchased_quantity - self.allocated_quantity


class Product:
    """The aggregate: every batch of one sku, changed only through this object.

    ``version_number`` grows with every change, so two transactions that changed
    the same product from the same read cannot both commit. ``event_sequence`` is
    the number of the last event raised (each event's ``product_version``); every
    event is raised by a change that also moves ``version_number``, so the same
    optimistic check keeps the sequence gap-free and without duplicates.
    """

    def __init__(
        self, sku: str, batches: list[Batch], version_number: int = 0, event_sequence: int = 0
    ) -> None:
        self.sku = require_text("sku", sku)
        self.batches = batches
        self.version_number = version_number
        self.event_sequence = event_sequence
        self.events: list[events.Event] = []

    def add_batch(self, batch: Batch) -> None:
        if batch.sku != self.sku:
            raise InvalidSku(f"batch {batch.reference} is for sku {batch.sku}, not {self.sku}")
        self.batches.append(batch)
        self.version_number += 1

    def allocate(self, line: OrderLine) -> str | None:
        """Allocate the line to the preferred batch with room; None when out of stock."""
        if line.sku != self.sku:
            raise InvalidSku(f"order line is for sku {line.sku}, not {self.sku}")
        holder = next((b for b in self.batches if b.holds(line)), None)
        if holder is not None:
            return holder.reference
        batch = next(
            (b for b in sorted(self.batches, key=lambda b: b.preference) if b.can_allocate(line)),
            None,
        )
        if batch is None:
            # A change of its own: the event takes a number in the sku's sequence.
            self.version_number += 1
            self.events.append(
                events.OutOfStock(
                    sku=line.sku,
                    orderid=line.orderid,
                    qty=line.qty,
                    product_version=self._next_event_number(),
                )
            )
            return None
        batch.allocate(line)
        self.version_number += 1
        self.events.append(
            events.Allocated(
                orderid=line.orderid,
                sku=line.sku,
                qty=line.qty,
                batchref=batch.reference,
                product_version=self._next_event_number(),
            )
        )
        return batch.reference

    def change_batch_quantity(
        self, ref: str, qty: int, expected_version: int | None = None
    ) -> None:
        """Set a batch's quantity; lines that no longer fit are deallocated (and announced).

        With ``expected_version``, a batch whose quantity changed since (another
        version) is left alone: StaleVersion.
        """
        batch = self.batch(ref)
        batch.change_purchased_quantity(qty, expected_version)
        self.version_number += 1
        while batch.available_quantity < 0:
            line = batch.deallocate_one()
            self.events.append(
                events.Deallocated(
                    orderid=line.orderid,
                    sku=line.sku,
                    qty=line.qty,
                    batchref=batch.reference,
                    product_version=self._next_event_number(),
                )
            )

    def _next_event_number(self) -> int:
        self.event_sequence += 1
        return self.event_sequence

    def batch(self, ref: str) -> Batch:
        found = next((b for b in self.batches if b.reference == ref), None)
        if found is None:
            raise InvalidBatchRef(f"no batch {ref!r} for sku {self.sku}")
        return found
