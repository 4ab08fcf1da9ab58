"""The reference downstream reader: dedupes by event_id, orders by product_version per sku."""

from __future__ import annotations

from typing import Any

from tests.reference_consumer import ReferenceConsumer


def event(number: int, orderid: str, batchref: str, sku: str = "LAMP") -> dict[str, Any]:
    return {
        "event_id": f"{sku}-{number}",
        "product_version": number,
        "orderid": orderid,
        "sku": sku,
        "qty": 1,
        "batchref": batchref,
    }


def test_a_reallocation_read_out_of_order_and_twice_ends_where_it_happened() -> None:
    reader = ReferenceConsumer()
    allocated, moved_out, moved_in = (
        event(1, "o1", "b1"),
        event(2, "o1", "b1"),
        event(3, "o1", "b2"),
    )

    reader.read("Allocated", moved_in)  # read first: waits for 1 and 2
    assert reader.holdings == {}
    assert reader.gaps() == {"LAMP": 1}
    reader.read("Deallocated", moved_out)
    reader.read("Allocated", allocated)
    reader.read("Allocated", allocated)

    assert reader.holdings == {("o1", "LAMP"): "b2"}
    assert (reader.gaps(), reader.duplicates) == ({}, 1)


def test_skus_have_sequences_of_their_own() -> None:
    reader = ReferenceConsumer()
    reader.read("Allocated", event(1, "o1", "b1", sku="LAMP"))
    reader.read("Allocated", event(1, "o2", "c1", sku="DESK"))
    assert reader.holdings == {("o1", "LAMP"): "b1", ("o2", "DESK"): "c1"}
