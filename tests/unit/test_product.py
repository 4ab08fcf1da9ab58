from datetime import date, timedelta

import pytest

from allocation.domain import events
from allocation.domain.errors import InvalidBatchRef, InvalidSku, StaleVersion
from allocation.domain.model import Batch, OrderLine, Product

today = date.today()
tomorrow = today + timedelta(days=1)
later = tomorrow + timedelta(days=10)


def test_prefers_warehouse_batches_to_shipments() -> None:
    in_stock = Batch("in-stock-batch", "RETRO-CLOCK", 100, eta=None)
    shipment = Batch("shipment-batch", "RETRO-CLOCK", 100, eta=tomorrow)
    product = Product(sku="RETRO-CLOCK", batches=[shipment, in_stock])

    product.allocate(OrderLine("oref", "RETRO-CLOCK", 10))

    assert in_stock.available_quantity == 90
    assert shipment.available_quantity == 100


def test_prefers_earlier_batches() -> None:
    earliest = Batch("speedy-batch", "MINIMALIST-SPOON", 100, eta=today)
    medium = Batch("normal-batch", "MINIMALIST-SPOON", 100, eta=tomorrow)
    latest = Batch("slow-batch", "MINIMALIST-SPOON", 100, eta=later)
    product = Product(sku="MINIMALIST-SPOON", batches=[medium, latest, earliest])

    product.allocate(OrderLine("order1", "MINIMALIST-SPOON", 10))

    assert (earliest.available_quantity, medium.available_quantity) == (90, 100)
    assert latest.available_quantity == 100


def test_returns_allocated_batch_ref_and_records_allocated() -> None:
    in_stock = Batch("in-stock-batch-ref", "HIGHBROW-POSTER", 100, eta=None)
    shipment = Batch("shipment-batch-ref", "HIGHBROW-POSTER", 100, eta=tomorrow)
    product = Product(sku="HIGHBROW-POSTER", batches=[in_stock, shipment])

    allocation = product.allocate(OrderLine("oref", "HIGHBROW-POSTER", 10))

    assert allocation == in_stock.reference
    assert product.events[-1] == events.Allocated(
        "oref", "HIGHBROW-POSTER", 10, in_stock.reference, product_version=1
    )


def test_records_out_of_stock_event_if_cannot_allocate() -> None:
    batch = Batch("batch1", "SMALL-FORK", 10, eta=today)
    product = Product(sku="SMALL-FORK", batches=[batch])
    product.allocate(OrderLine("order1", "SMALL-FORK", 10))

    allocation = product.allocate(OrderLine("order2", "SMALL-FORK", 1))

    assert product.events[-1] == events.OutOfStock(
        sku="SMALL-FORK", orderid="order2", qty=1, product_version=2
    )
    assert allocation is None


def test_increments_version_number_on_each_allocation() -> None:
    line = OrderLine("oref", "SCANDI-PEN", 10)
    product = Product(sku="SCANDI-PEN", batches=[Batch("b1", "SCANDI-PEN", 100, eta=None)])
    product.version_number = 7
    product.allocate(line)
    assert product.version_number == 8


def test_out_of_stock_moves_the_version_so_two_writers_cannot_share_its_number() -> None:
    product = Product(sku="PEN", batches=[Batch("b1", "PEN", 1, eta=None)], version_number=3)
    product.allocate(OrderLine("o1", "PEN", 5))
    assert product.version_number == 4


def test_events_are_numbered_per_sku_without_gaps_across_kinds() -> None:
    early, late = Batch("b1", "LAMP", 10, eta=None), Batch("b2", "LAMP", 10, eta=later)
    product = Product("LAMP", [early, late], event_sequence=7)
    product.allocate(OrderLine("o1", "LAMP", 8))
    product.allocate(OrderLine("o2", "LAMP", 20))
    product.change_batch_quantity("b1", 5)
    product.allocate(OrderLine("o1", "LAMP", 8))  # the reallocation, as the handler does it

    assert [(type(e).__name__, e.product_version) for e in product.events] == [
        ("Allocated", 8),
        ("OutOfStock", 9),
        ("Deallocated", 10),
        ("Allocated", 11),
    ]
    assert product.event_sequence == 11


def test_allocating_the_same_line_twice_counts_once() -> None:
    batch = Batch("b1", "LAMP", 10, eta=None)
    product = Product(sku="LAMP", batches=[batch])
    line = OrderLine("o1", "LAMP", 4)

    first = product.allocate(line)
    second = product.allocate(line)

    assert first == second == "b1"
    assert batch.available_quantity == 6
    assert product.events == [events.Allocated("o1", "LAMP", 4, "b1", product_version=1)]
    assert product.version_number == 1


def test_allocating_a_line_of_another_sku_is_rejected() -> None:
    product = Product(sku="LAMP", batches=[Batch("b1", "LAMP", 10, eta=None)])
    with pytest.raises(InvalidSku):
        product.allocate(OrderLine("o1", "CHAIR", 1))


class TestChangeBatchQuantity:
    def test_changes_available_quantity(self) -> None:
        batch = Batch("b1", "ADORABLE-SETTEE", 100, eta=None)
        product = Product("ADORABLE-SETTEE", [batch])
        product.change_batch_quantity("b1", 50)
        assert batch.available_quantity == 50

    def test_deallocates_until_the_batch_fits_and_records_deallocated(self) -> None:
        batch = Batch("b1", "INDIFFERENT-TABLE", 50, eta=None)
        product = Product("INDIFFERENT-TABLE", [batch])
        for orderid in ("o1", "o2"):
            product.allocate(OrderLine(orderid, "INDIFFERENT-TABLE", 20))
        product.events.clear()

        product.change_batch_quantity("b1", 25)

        assert batch.available_quantity == 5
        assert product.events == [
            events.Deallocated("o2", "INDIFFERENT-TABLE", 20, "b1", product_version=3)
        ]

    def test_unknown_batch_ref_is_a_domain_error(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 10, eta=None)])
        with pytest.raises(InvalidBatchRef):
            product.change_batch_quantity("nope", 5)

    def test_a_batch_counts_its_quantity_changes_not_its_allocations(self) -> None:
        batch = Batch("b1", "LAMP", 10, eta=None)
        product = Product("LAMP", [batch])
        product.allocate(OrderLine("o1", "LAMP", 2))
        assert batch.version == 1
        product.change_batch_quantity("b1", 8, expected_version=1)
        assert (batch.version, batch.purchased_quantity) == (2, 8)

    def test_a_stale_expected_version_is_rejected_and_changes_nothing(self) -> None:
        batch = Batch("b1", "LAMP", 10, eta=None)
        product = Product("LAMP", [batch])
        product.change_batch_quantity("b1", 8)
        with pytest.raises(StaleVersion, match=r"batch b1 is at version 2, .* expected version 1"):
            product.change_batch_quantity("b1", 3, expected_version=1)
        assert (batch.version, batch.purchased_quantity, product.version_number) == (2, 8, 1)

    def test_increments_the_version(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 10, eta=None)])
        product.change_batch_quantity("b1", 5)
        assert product.version_number == 1
