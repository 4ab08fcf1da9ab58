"""Contract suites: each port's behaviour, checked against its fake and its real adapter.

A subclass provides the ``port`` fixture (and, for allocations, ``line``); see
``tests/unit/test_fake_contracts.py`` and ``tests/integration/test_sql_contracts.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from allocation.domain import events
from allocation.domain.commands import Allocate
from allocation.domain.model import Allocations, Batch, OrderLine, Product
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractInbox,
    AbstractRepository,
    AbstractResponses,
    AbstractWaiting,
    AllocationView,
    OutboxEntry,
    StoredResponse,
    WaitingCommand,
)
from allocation.service_layer.unit_of_work import Envelope, Source
from tests.conftest import random_batchref, random_orderid, random_sku


class AllocationsContract:
    sku = "CONTRACT-LAMP"

    def line(self, qty: int, orderid: str = "") -> OrderLine:
        return OrderLine(orderid or random_orderid(), self.sku, qty)

    def test_an_added_line_is_held_and_counted(self, port: Allocations) -> None:
        line = self.line(3)
        port.add(line)
        assert line in port
        assert (port.quantity, len(port), set(port)) == (3, 1, {line})

    def test_adding_the_same_line_twice_counts_once(self, port: Allocations) -> None:
        line = self.line(3)
        port.add(line)
        port.add(line)
        assert (port.quantity, len(port)) == (3, 1)

    def test_a_line_of_another_quantity_is_another_line(self, port: Allocations) -> None:
        line = self.line(3)
        port.add(line)
        assert OrderLine(line.orderid, line.sku, 4) not in port

    def test_removing_releases_and_removing_again_is_harmless(self, port: Allocations) -> None:
        kept, dropped = self.line(2), self.line(5)
        port.add(kept)
        port.add(dropped)
        port.remove(dropped)
        port.remove(dropped)
        assert dropped not in port
        assert (port.quantity, set(port)) == (2, {kept})

    def test_a_removed_line_can_come_back(self, port: Allocations) -> None:
        line = self.line(4)
        port.add(line)
        port.remove(line)
        port.add(line)
        assert line in port
        assert port.quantity == 4

    def test_largest_is_the_biggest_line_then_the_greatest_order_id(
        self, port: Allocations
    ) -> None:
        assert port.largest() is None
        small, big_a, big_b = self.line(1, "o-1"), self.line(9, "o-2"), self.line(9, "o-3")
        for line in (small, big_a, big_b):
            port.add(line)
        assert port.largest() == big_b
        port.remove(big_b)
        assert port.largest() == big_a
        port.remove(big_a)
        assert port.largest() == small


class RepositoryContract:
    def test_a_product_added_can_be_got_by_sku_and_by_batch_ref(
        self, port: AbstractRepository
    ) -> None:
        sku, ref = random_sku(), random_batchref()
        product = Product(sku, [Batch(ref, sku, 10, eta=None)])
        port.add(product)
        assert port.get(sku) is product
        assert port.get_by_batchref(ref) is product
        assert product in port.seen

    def test_unknown_keys_give_none(self, port: AbstractRepository) -> None:
        assert port.get(random_sku()) is None
        assert port.get_by_batchref(random_batchref()) is None


class InboxContract:
    def test_a_message_is_new_once(self, port: AbstractInbox) -> None:
        message_id = f"msg-{random_orderid()}"
        assert port.record(message_id) is True
        assert port.record(message_id) is False

    def test_a_message_known_by_an_alias_is_a_duplicate_and_the_alias_is_not_recorded(
        self, port: AbstractInbox
    ) -> None:
        old, new, other = (f"{kind}-{random_orderid()}" for kind in ("old", "new", "other"))
        assert port.record(old) is True
        assert port.record(new, aliases=[old]) is False
        assert port.record(other, aliases=[f"never-{new}"]) is True
        assert port.record(f"never-{new}") is True  # an alias looked up is not recorded


class ResponsesContract:
    def test_a_saved_response_is_read_back_and_others_are_unknown(
        self, port: AbstractResponses
    ) -> None:
        message_id = f"http:{random_orderid()}"
        assert port.get(message_id) is None
        port.save(message_id, StoredResponse("abc", 201, {"ref": "b1", "n": [1, None]}))
        assert port.get(message_id) == StoredResponse("abc", 201, {"ref": "b1", "n": [1, None]})
        assert port.get(f"http:{random_orderid()}") is None


class AllocationsViewContract:
    def test_lists_an_orders_lines_by_sku_and_forgets_removed_ones(
        self, port: AbstractAllocationsView
    ) -> None:
        orderid = random_orderid()
        port.add(orderid, "B-SKU", "b1")
        port.add(orderid, "A-SKU", "b2")
        port.add(random_orderid(), "A-SKU", "b2")
        assert port.for_order(orderid) == [
            AllocationView(orderid, "A-SKU", "b2"),
            AllocationView(orderid, "B-SKU", "b1"),
        ]
        port.remove(orderid, "B-SKU", "b1")
        assert port.for_order(orderid) == [AllocationView(orderid, "A-SKU", "b2")]


class OutboxWorld(Protocol):
    """An outbox and what a relay would see of it."""

    def write(self, entries: list[OutboxEntry], commit: bool) -> None:
        """Add the entries in one transaction, then commit it or roll it back."""

    def to_publish(self, keys: set[str]) -> list[OutboxEntry]:
        """The rows of these keys waiting for the relay, in the order it would publish them."""


def entry(key: str, n: int, cause: str | None = None) -> OutboxEntry:
    return OutboxEntry(
        event=events.Allocated(f"order-{n}", key, n, "b1"),
        topic="line-allocated",
        key=key,
        occurred_at=datetime.now(UTC),
        causation_id=cause,
        correlation_id="corr-1" if cause else None,
    )


class OutboxContract:
    def test_rows_come_back_in_commit_order_per_key(self, world: OutboxWorld) -> None:
        a, b = random_sku("a"), random_sku("b")
        first, second, third = [entry(a, 1), entry(b, 1)], [entry(a, 2)], [entry(b, 2), entry(a, 3)]
        for transaction in (first, second, third):
            world.write(transaction, commit=True)
        published = world.to_publish({a, b})
        for key in (a, b):
            committed = [e.event_id for t in (first, second, third) for e in t if e.key == key]
            assert [e.event_id for e in published if e.key == key] == committed

    def test_a_rolled_back_transaction_leaves_no_row(self, world: OutboxWorld) -> None:
        key = random_sku("rolled-back")
        world.write([entry(key, 1), entry(key, 2)], commit=False)
        assert world.to_publish({key}) == []

    def test_a_row_keeps_its_event_and_envelope(self, world: OutboxWorld) -> None:
        key = random_sku("envelope")
        written = entry(key, 4, cause=f"id:{uuid.uuid4()}")
        world.write([written], commit=True)
        (read,) = world.to_publish({key})
        assert (read.event, read.topic, read.event_id) == (
            written.event,
            written.topic,
            written.event_id,
        )
        assert (read.causation_id, read.correlation_id) == (written.causation_id, "corr-1")


def waiting_order(n: int, sku: str) -> WaitingCommand:
    envelope = Envelope(
        f"id:allocate:m-{sku}-{n}",
        correlation_id=f"c-{n}",
        traceparent=f"00-{n:032x}-{n:016x}-01",
        source=Source("allocate", 2, 100 + n),
    )
    return WaitingCommand(Allocate(f"o{n}", sku, n), envelope)


class WaitingContract:
    """A subclass provides ``port`` and ``add_product`` (gives a sku a product)."""

    def test_orders_wait_by_sku_and_are_taken_oldest_first_with_their_envelope(
        self, port: AbstractWaiting
    ) -> None:
        sku, other = f"W-{uuid.uuid4().hex[:8]}", f"W-{uuid.uuid4().hex[:8]}"
        orders = [waiting_order(n, sku) for n in (1, 2, 3)]
        for order in orders:
            port.add(order, timedelta(hours=1))
        port.add(waiting_order(4, other), timedelta(hours=1))
        assert port.holds(sku)
        assert port.take(sku) == orders
        assert not port.holds(sku)
        assert port.take(sku) == []
        assert port.holds(other)

    def test_only_orders_whose_wait_is_over_expire(self, port: AbstractWaiting) -> None:
        sku = f"W-{uuid.uuid4().hex[:8]}"
        over, waiting = waiting_order(1, sku), waiting_order(2, sku)
        port.add(over, timedelta(seconds=-1))
        port.add(waiting, timedelta(hours=1))
        taken = [w for w in port.take_expired(1000) if w.command.sku == sku]
        assert taken == [over]
        assert port.take(sku) == [waiting]

    def test_skus_that_got_a_product_while_orders_wait_are_stranded(
        self, port: AbstractWaiting, add_product: Callable[[str], None]
    ) -> None:
        stocked, unknown = f"W-{uuid.uuid4().hex[:8]}", f"W-{uuid.uuid4().hex[:8]}"
        port.add(waiting_order(1, stocked), timedelta(hours=1))
        port.add(waiting_order(2, unknown), timedelta(hours=1))
        add_product(stocked)
        stranded = port.stranded(1000)
        assert stocked in stranded
        assert unknown not in stranded
