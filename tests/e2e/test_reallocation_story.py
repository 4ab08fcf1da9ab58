"""The book's story over Kafka alone: commands in on topics, events out through the outbox."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Engine

from allocation.config import Settings
from testkit.processes import Service, wait_for_batches
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku


def of_sku(received: list[Decoded], topic: str, sku: str) -> list[Decoded]:
    return [r for r in received if r.topic == topic and r.key == sku]


ENVELOPE = ("product_version", "event_id", "occurred_at", "causation_id")


def fields(event: Decoded) -> dict[str, object]:
    """The event's own fields, without the envelope it also carries."""
    assert event.value is not None
    return {k: v for k, v in event.value.items() if k not in ENVELOPE}


def test_change_batch_quantity_leads_to_reallocation(
    e2e_settings: Settings,
    engine: Engine,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    s = e2e_settings
    sku, earlier, later = random_sku(), random_batchref("old"), random_batchref("newer")
    orderid = random_orderid()
    soon, then = date.today(), date.today() + timedelta(days=3)
    sender.send(s.topic_add_batch, {"ref": earlier, "sku": sku, "qty": 10, "eta": soon}, sku)
    sender.send(s.topic_add_batch, {"ref": later, "sku": sku, "qty": 10, "eta": then}, sku)
    sender.flush()
    # Kafka orders messages within a partition of one topic, not across topics: the
    # batches must exist before an Allocate on another topic can find them.
    wait_for_batches(engine, [earlier, later])
    sender.send(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 10}, sku)
    sender.flush()

    received = events.read_until(
        lambda got: len(of_sku(got, s.topic_line_allocated, sku)) == 1, timeout=60
    )
    first = of_sku(received, s.topic_line_allocated, sku)[0]
    assert fields(first) == {"orderid": orderid, "sku": sku, "qty": 10, "batchref": earlier}

    sender.send(s.topic_batch_quantity, {"batchref": earlier, "qty": 5}, earlier)
    sender.flush()

    received = events.read_until(
        lambda got: (
            len(of_sku(got, s.topic_line_allocated, sku)) == 2
            and len(of_sku(got, s.topic_line_deallocated, sku)) == 1
        ),
        timeout=60,
    )
    deallocated = of_sku(received, s.topic_line_deallocated, sku)[0]
    reallocated = of_sku(received, s.topic_line_allocated, sku)[1]
    assert fields(deallocated) == {"orderid": orderid, "sku": sku, "qty": 10, "batchref": earlier}
    assert fields(reallocated) == {"orderid": orderid, "sku": sku, "qty": 10, "batchref": later}
    for event in (first, deallocated, reallocated):
        assert set(event.headers) >= {"event_id", "event_type", "occurred_at", "causation_id"}
        # The envelope rides in the payload too, for sinks that drop headers.
        assert event.value is not None
        assert event.value["event_id"] == event.headers["event_id"]
        assert event.value["causation_id"] == event.headers["causation_id"]
        assert event.value["occurred_at"].isoformat() == event.headers["occurred_at"]
    # One sequence per sku across both topics: the reallocation's two halves are in order.
    assert [e.value["product_version"] for e in (first, deallocated, reallocated) if e.value] == [
        1,
        2,
        3,
    ]
    assert deallocated.headers["causation_id"] == reallocated.headers["causation_id"]
    assert deallocated.headers["event_type"] == "Deallocated"
