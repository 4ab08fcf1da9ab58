"""What a chaos scenario's verdict compares: the fault-free result, the rows the service
stored, and the events it published, in the order its transactions committed."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from allocation.adapters.avro import AvroCodec
from allocation.adapters.tables import allocations, batches, inbox, outbox
from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.domain import commands
from testkit.traffic import Recorder
from tests.fakes import FakeUnitOfWork

Allocation = tuple[str, str, int, str]  # orderid, sku, qty, batchref


def expected_allocations(
    creates: list[commands.CreateBatch], orders: list[commands.Allocate]
) -> list[Allocation]:
    """The fault-free result: the same commands, in the same per-sku order, applied once."""
    uow = FakeUnitOfWork()
    bus = bootstrap(settings_from(), uow_factory=lambda: uow).bus
    for command in [*creates, *orders]:
        bus.handle(command)
    return [
        (line.orderid, line.sku, line.qty, batch.reference)
        for product in uow.products._products
        for batch in product.batches
        for line in batch._allocations
    ]


def stored_allocations(engine: Engine, skus: set[str]) -> list[Allocation]:
    query = (
        select(allocations.c.orderid, allocations.c.sku, allocations.c.qty, batches.c.reference)
        .join(batches, batches.c.id == allocations.c.batch_id)
        .where(allocations.c.sku.in_(skus))
    )
    with engine.connect() as connection:
        return [(r[0], r[1], r[2], r[3]) for r in connection.execute(query)]


def orders_in_inbox(engine: Engine, topic: str) -> int:
    """Commands of ``topic`` the inbox recorded as applied (or rejected)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(inbox)
                # id-less commands: at:<topic>:<partition>:<offset>:<timestamp> (README)
                .where(inbox.c.message_id.like(f"at:{topic}:%"))
            ).scalar_one()
        )


def published_allocations(
    recorder: Recorder, codec: AvroCodec, topic: str
) -> dict[str, Allocation]:
    """event_id -> allocation, from line-allocated (a re-publication shares its event_id)."""
    out: dict[str, Allocation] = {}
    for s in recorder.on(topic):
        v = codec.decode(topic, s.value)
        allocation = (v["orderid"], v["sku"], v["qty"], v["batchref"])
        assert out.setdefault(s.headers["event_id"], allocation) == allocation
    return out


def assert_commit_order(engine: Engine, recorder: Recorder, topic: str, skus: set[str]) -> None:
    """Per sku, line-allocated carries the events in the order their transactions committed."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(outbox.c.key, outbox.c.event_id)
            .where(outbox.c.key.in_(skus), outbox.c.event_type == "Allocated")
            .order_by(outbox.c.id)
        ).all()
    committed: dict[str, list[str]] = {}
    for key, event_id in rows:
        committed.setdefault(key, []).append(str(event_id))
    on_topic: dict[str, list[str]] = {}
    for s in sorted(recorder.on(topic), key=lambda s: (s.partition, s.offset)):
        ids = on_topic.setdefault(s.key or "", [])
        if s.headers["event_id"] not in ids:
            ids.append(s.headers["event_id"])
    assert on_topic == committed, "per-sku order on line-allocated differs from commit order"
