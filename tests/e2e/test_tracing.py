"""A command's W3C trace continues through the outbox onto the events it causes."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine

from allocation.config import Settings
from testkit.processes import Service, wait_for_batches
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku


def test_an_allocated_event_carries_the_trace_id_of_its_command(
    e2e_settings: Settings,
    engine: Engine,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    s = e2e_settings
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    sender.create_batch(s.topic_add_batch, ref, sku, 5)
    wait_for_batches(engine, [ref])
    sender.send(
        s.topic_allocate,
        {"orderid": orderid, "sku": sku, "qty": 2},
        sku,
        headers=[("traceparent", traceparent.encode())],
    )
    sender.flush()

    def ours(got: list[Decoded]) -> list[Decoded]:
        return [r for r in got if r.value and r.value.get("orderid") == orderid]

    (event,) = ours(events.read_until(lambda got: bool(ours(got)), timeout=60))
    version, carried_trace, _span_id, _flags = event.headers["traceparent"].split("-")
    assert (version, carried_trace) == ("00", trace_id)
