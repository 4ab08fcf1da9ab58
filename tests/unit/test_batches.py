from datetime import date

import pytest

from allocation.domain.errors import InvalidQuantity, InvalidValue
from allocation.domain.model import Batch, OrderLine


def make_batch_and_line(sku: str, batch_qty: int, line_qty: int) -> tuple[Batch, OrderLine]:
    return Batch("batch-001", sku, batch_qty, eta=date.today()), OrderLine(
        "order-123", sku, line_qty
    )


def test_allocating_to_a_batch_reduces_the_available_quantity() -> None:
    batch = Batch("batch-001", "SMALL-TABLE", qty=20, eta=date.today())
    batch.allocate(OrderLine("order-ref", "SMALL-TABLE", 2))
    assert batch.available_quantity == 18
    assert batch.allocated_quantity == 2


def test_can_allocate_if_available_greater_than_required() -> None:
    large_batch, small_line = make_batch_and_line("ELEGANT-LAMP", 20, 2)
    assert large_batch.can_allocate(small_line)


def test_cannot_allocate_if_available_smaller_than_required() -> None:
    small_batch, large_line = make_batch_and_line("ELEGANT-LAMP", 2, 20)
    assert small_batch.can_allocate(large_line) is False


def test_can_allocate_if_available_equal_to_required() -> None:
    batch, line = make_batch_and_line("ELEGANT-LAMP", 2, 2)
    assert batch.can_allocate(line)


def test_cannot_allocate_if_skus_do_not_match() -> None:
    batch = Batch("batch-001", "UNCOMFORTABLE-CHAIR", 100, eta=None)
    assert batch.can_allocate(OrderLine("order-123", "EXPENSIVE-TOASTER", 10)) is False


def test_allocation_is_idempotent() -> None:
    batch, line = make_batch_and_line("ANGULAR-DESK", 20, 2)
    batch.allocate(line)
    batch.allocate(line)
    assert batch.available_quantity == 18


def test_can_only_deallocate_allocated_lines() -> None:
    batch, unallocated_line = make_batch_and_line("DECORATIVE-TRINKET", 20, 2)
    batch.deallocate(unallocated_line)
    assert batch.available_quantity == 20


def test_deallocate_one_releases_the_largest_line() -> None:
    batch = Batch("b1", "LAMP", 20, eta=None)
    for line in (
        OrderLine("o1", "LAMP", 3),
        OrderLine("o2", "LAMP", 7),
        OrderLine("o3", "LAMP", 7),
    ):
        batch.allocate(line)
    assert batch.deallocate_one() == OrderLine("o3", "LAMP", 7)
    assert batch.deallocate_one() == OrderLine("o2", "LAMP", 7)
    assert batch.available_quantity == 17


@pytest.mark.parametrize("qty", [0, -1, 1.5, "3", True])
def test_order_line_quantity_must_be_a_positive_integer(qty: object) -> None:
    with pytest.raises(InvalidQuantity):
        OrderLine("o1", "LAMP", qty)  # type: ignore[arg-type]


@pytest.mark.parametrize("qty", [0, -5])
def test_batch_quantity_must_be_positive(qty: int) -> None:
    with pytest.raises(InvalidQuantity):
        Batch("b1", "LAMP", qty, eta=None)


@pytest.mark.parametrize(
    ("orderid", "sku"),
    [
        ("", "LAMP"),
        ("o1", ""),
        ("o1", "   "),
        ("o" * 256, "LAMP"),
        ("o\x001", "LAMP"),
        ("o1", "LA\nMP"),
        ("o\ud8001", "LAMP"),
    ],
)
def test_identifiers_must_not_be_empty(orderid: str, sku: str) -> None:
    with pytest.raises(InvalidValue):
        OrderLine(orderid, sku, 1)


def test_a_batch_may_be_shrunk_to_zero_but_not_below() -> None:
    batch = Batch("b1", "LAMP", 10, eta=None)
    batch.change_purchased_quantity(0)
    assert batch.available_quantity == 0
    with pytest.raises(InvalidQuantity):
        batch.change_purchased_quantity(-1)
