"""An order sent before its sku's first batch is allocated once the batch comes (issue 10).

``allocate`` and ``add-batch`` are separate topics: nothing orders an Allocate after
the CreateBatch its sender sent first. The consumer keeps such an order waiting,
and applies it in the transaction of the sku's first batch. (The tests' orders
wait 15 s, not 15 minutes: the one whose batch never comes is rejected then.)
"""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from allocation.adapters.tables import allocations, waiting_commands
from allocation.config import Settings
from testkit.processes import Service, wait_until
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku


def test_orders_before_their_batch_wait_for_it_and_one_without_a_batch_is_rejected(
    e2e_settings: Settings,
    engine: Engine,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
    dead_letters: DecodingReader,
) -> None:
    s = e2e_settings
    sku, never, ref = random_sku(), random_sku("never"), random_batchref()
    orders = [f"{random_orderid()}-{n}" for n in range(3)]
    for n, orderid in enumerate(orders):
        headers = [("message_id", orderid.encode())]
        sender.send(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": n + 1}, sku, headers)
    lonely = random_orderid()
    sender.send(s.topic_allocate, {"orderid": lonely, "sku": never, "qty": 1}, never)
    # Poison behind the lonely order on its partition: once it is dead-lettered, the order
    # would have been too, had it been taken for poison.
    sentinel = f"waiting-{never}"
    sender.send_raw(s.topic_allocate, b"not avro", never, headers=[("sentinel", sentinel.encode())])
    sender.flush()

    def parked() -> int:
        with engine.connect() as connection:
            query = select(func.count()).where(waiting_commands.c.sku.in_([sku, never]))
            return int(connection.execute(query).scalar_one())

    wait_until(lambda: parked() == 4, 30, "the four orders to wait for their sku")
    sender.create_batch(s.topic_add_batch, ref, sku, 10)

    def ours(got: list[Decoded]) -> list[Decoded]:
        return [r for r in got if r.value and r.key in (sku, never)]

    def done(got: list[Decoded]) -> bool:
        kinds = [r.topic for r in ours(got)]
        return kinds.count(s.topic_line_allocated) == 3 and s.topic_command_rejected in kinds

    received = ours(events.read_until(done, 60))
    allocated = [r for r in received if r.topic == s.topic_line_allocated]
    # In the order they were read, each caused by its own command.
    assert [r.value["orderid"] for r in allocated if r.value] == orders
    assert [r.value["causation_id"] for r in allocated if r.value] == [
        f"id:{s.topic_allocate}:{orderid}" for orderid in orders
    ]
    [rejected] = [r.value for r in received if r.topic == s.topic_command_rejected]
    assert rejected is not None
    assert (rejected["reason"], rejected["key"], rejected["source_topic"]) == (
        "InvalidSku",
        never,
        s.topic_allocate,
    )
    assert "no batch of it arrived" in rejected["message"]
    assert parked() == 0
    with engine.connect() as connection:
        held = connection.execute(
            select(func.sum(allocations.c.qty)).where(allocations.c.sku == sku)
        ).scalar_one()
    assert held == 6
    letters = dead_letters.read_until(
        lambda got: any(r.headers.get("sentinel") == sentinel for r in got), 30
    )
    assert [r.headers.get("sentinel") for r in letters if r.key in (sku, never)] == [sentinel]
    assert services["consumer"].running
