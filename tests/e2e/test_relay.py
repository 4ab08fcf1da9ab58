"""The outbox relay on the real servers: failover, and rows that can never be sent."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, insert, select, text

from allocation.adapters.outbox_operations import parked as parked_rows
from allocation.adapters.outbox_operations import skip
from allocation.adapters.outbox_publishing import fetch_pending
from allocation.adapters.tables import outbox
from allocation.bootstrap import bootstrap, database
from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints import relay as relay_process
from allocation.entrypoints.relay import OutboxRelay
from testkit.processes import (
    Service,
    leading_relay_pid,
    service_env,
    wait_for_leader,
    wait_until,
)
from testkit.traffic import Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku


def allocated_for(received: list[Decoded], sku: str) -> dict[str, object]:
    return {r.headers["event_id"]: r.value for r in received if r.key == sku}


def test_a_standby_relay_takes_over_when_the_leader_dies(
    e2e_settings: Settings, engine: Engine, log_dir: Path, events: DecodingReader
) -> None:
    env = service_env(e2e_settings)
    leader = Service(["relay"], env, log_dir, "relay-a").start()
    wait_for_leader(engine, leader, timeout=30)
    standby = Service(["relay"], env, log_dir, "relay-b").start()
    app = bootstrap(e2e_settings)
    sku = random_sku()
    try:
        app.bus.handle(commands.CreateBatch(random_batchref(), sku, 1000, None))
        for _ in range(20):
            app.bus.handle(commands.Allocate(random_orderid(), sku, 1))
        events.read_until(lambda got: len(allocated_for(got, sku)) == 20, timeout=30)
        assert leading_relay_pid(engine) == leader.pid

        leader.kill()
        for _ in range(20):
            app.bus.handle(commands.Allocate(random_orderid(), sku, 1))
        wait_for_leader(engine, standby, timeout=30)
        received = events.read_until(lambda got: len(allocated_for(got, sku)) == 40, timeout=30)
    finally:
        app.close()
        assert standby.terminate() == 0
    assert len(allocated_for(received, sku)) == 40
    with engine.connect() as connection:
        pending = connection.execute(
            select(outbox.c.id).where(outbox.c.key == sku, outbox.c.published_at.is_(None))
        ).all()
    assert pending == []


@pytest.fixture
def relay(e2e_settings: Settings, engine: Engine) -> Iterator[OutboxRelay]:
    stop = threading.Event()
    impatient = e2e_settings.model_copy(update={"relay_max_attempts": 2, "relay_retry_base_s": 0.3})
    relay = relay_process.build(impatient, engine, stop)
    thread = threading.Thread(target=relay.run)
    thread.start()
    yield relay
    stop.set()
    thread.join(30)


def insert_row(engine: Engine, settings: Settings, key: str, payload: dict[str, object]) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(outbox)
                .values(
                    event_id=uuid.uuid4(),
                    event_type="Allocated",
                    topic=settings.topic_line_allocated,
                    key=key,
                    payload=payload,
                    occurred_at=datetime.now(UTC),
                )
                .returning(outbox.c.id)
            ).scalar_one()
        )


def test_an_unsendable_row_is_parked_and_holds_its_key_until_an_operator_decides(
    e2e_settings: Settings, engine: Engine, relay: OutboxRelay, events: DecodingReader
) -> None:
    stuck, free = random_sku("stuck"), random_sku("free")

    def line(sku: str, qty: object) -> dict[str, object]:
        return {"orderid": random_orderid(), "sku": sku, "qty": qty, "batchref": "b"}

    bad = insert_row(engine, e2e_settings, stuck, line(stuck, "not a number"))
    later = insert_row(engine, e2e_settings, stuck, line(stuck, 1))
    insert_row(engine, e2e_settings, free, line(free, 2))

    received = events.read_until(lambda got: any(r.key == free for r in got), timeout=30)
    assert not any(r.key == stuck for r in received), "a key's later row waits for its earlier one"

    def parked() -> bool:
        with engine.connect() as connection:
            row = connection.execute(select(outbox).where(outbox.c.id == bad)).one()
        return row.parked_at is not None

    wait_until(parked, timeout=30, what="the unsendable row to be parked")
    with engine.begin() as connection:
        row = connection.execute(select(outbox).where(outbox.c.id == bad)).one()
        assert (row.attempts, row.published_at) == (2, None)
        assert "qty" in (row.last_error or "")
        assert [r["id"] for r in parked_rows(connection) if r["key"] == stuck] == [bad]
        # Parked, it still holds its key: the later row is not offered to the relay.
        assert later not in {r.id for r in fetch_pending(connection, 100_000)}
        assert skip(connection, [bad]) == 1
        assert [r["id"] for r in parked_rows(connection) if r["key"] == stuck] == []

    received = events.read_until(lambda got: any(r.key == stuck for r in got), timeout=30)
    assert [r.value["qty"] for r in received if r.key == stuck and r.value] == [1]


def test_the_relay_publishes_on_one_held_connection_and_connects_anew_when_it_is_ended(
    e2e_settings: Settings, engine: Engine, events: DecodingReader
) -> None:
    own = database(e2e_settings, pool_size=3, pre_ping=False)
    backends: list[int] = []
    checkouts: list[int] = []
    event.listen(own, "connect", lambda dbapi, _record: backends.append(dbapi.get_backend_pid()))
    event.listen(own, "checkout", lambda *_: checkouts.append(1))
    stop = threading.Event()
    relay = relay_process.build(e2e_settings, own, stop)
    thread = threading.Thread(target=relay.run)
    thread.start()
    sku = random_sku("held")

    def line() -> dict[str, object]:
        return {"orderid": random_orderid(), "sku": sku, "qty": 1, "batchref": "b"}

    def sent(count: int) -> None:
        events.read_until(lambda got: sum(r.key == sku for r in got) >= count, timeout=30)

    try:
        insert_row(engine, e2e_settings, sku, line())
        sent(1)
        settled = len(checkouts)
        for n in range(2, 7):  # rounds of reads and marks, each caught up: no pool checkout
            insert_row(engine, e2e_settings, sku, line())
            sent(n)
        assert len(checkouts) == settled

        with engine.connect() as connection:  # the server ends every connection the relay has
            for pid in backends:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        insert_row(engine, e2e_settings, sku, line())
        sent(7)
    finally:
        stop.set()
        thread.join(30)
        own.dispose()
    with engine.connect() as connection:
        pending = connection.execute(
            select(outbox.c.id).where(outbox.c.key == sku, outbox.c.published_at.is_(None))
        ).all()
    assert pending == []
