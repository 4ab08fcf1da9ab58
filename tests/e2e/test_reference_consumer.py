"""Downstream can rebuild every order's allocation from the event topics alone."""

from __future__ import annotations

import random
from datetime import date, timedelta

from sqlalchemy import Engine, select

from allocation.adapters import tables
from allocation.config import Settings
from testkit.processes import Service, wait_for_batches
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku
from tests.reference_consumer import ReferenceConsumer


def event_values(received: list[Decoded], settings: Settings, sku: str) -> list[tuple[str, dict]]:
    types = {
        settings.topic_line_allocated: "Allocated",
        settings.topic_line_deallocated: "Deallocated",
        settings.topic_out_of_stock: "OutOfStock",
    }
    return [(types[r.topic], r.value) for r in received if r.key == sku and r.value is not None]


def test_the_event_topics_alone_rebuild_the_allocations_after_a_reallocation(
    e2e_settings: Settings,
    engine: Engine,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    s = e2e_settings
    sku, early, late = random_sku(), random_batchref("early"), random_batchref("late")
    big, small = random_orderid("big"), random_orderid("small")
    sender.send(s.topic_add_batch, {"ref": early, "sku": sku, "qty": 10, "eta": None}, sku)
    sender.send(
        s.topic_add_batch,
        {"ref": late, "sku": sku, "qty": 10, "eta": date.today() + timedelta(days=3)},
        sku,
    )
    sender.flush()
    wait_for_batches(engine, [early, late])
    sender.send(s.topic_allocate, {"orderid": big, "sku": sku, "qty": 6}, sku)
    sender.send(s.topic_allocate, {"orderid": small, "sku": sku, "qty": 4}, sku)
    sender.flush()
    events.read_until(lambda got: len(event_values(got, s, sku)) == 2, timeout=60)
    # Down to 4: the big line leaves for the later batch, the small one stays.
    sender.send(s.topic_batch_quantity, {"batchref": early, "qty": 4, "expected_version": 1}, early)
    sender.flush()
    received = events.read_until(lambda got: len(event_values(got, s, sku)) == 4, timeout=60)

    values = event_values(received, s, sku)
    shuffled = values + values  # every event twice, in any order: the reader copes
    random.Random(15).shuffle(shuffled)
    reader = ReferenceConsumer()
    reader.read_all(shuffled)

    with engine.connect() as connection:
        held = connection.execute(
            select(
                tables.allocations.c.orderid, tables.allocations.c.sku, tables.batches.c.reference
            )
            .join(tables.batches, tables.batches.c.id == tables.allocations.c.batch_id)
            .where(tables.allocations.c.sku == sku)
        ).all()
    assert reader.holdings == {(orderid, sku_): ref for orderid, sku_, ref in held}
    assert reader.holdings == {(big, sku): late, (small, sku): early}
    assert (reader.gaps(), reader.applied_up_to(sku), reader.duplicates) == ({}, 4, 4)
