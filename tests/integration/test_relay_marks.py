"""The relay's rounds on a real PostgreSQL, with a fake broker.

The relay marks a full chunk on its mark thread while it reads and sends the next one: one
mark on the mark thread fails after the next chunk went out, and nothing is lost or
reordered. A producer that reports a fatal error is replaced, and the replacement counted.
"""

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import OperationalError

from allocation.adapters import outbox_publishing
from allocation.adapters.database import make_engine
from allocation.adapters.tables import outbox as outbox_table
from allocation.bootstrap import upgrade_schema
from allocation.config import Settings
from allocation.entrypoints.relay import OutboxRelay
from allocation.entrypoints.relay_policy import RelayPolicy
from testkit.processes import wait_until
from tests.conftest import fresh_database, random_sku
from tests.observability import clients_replaced

TOPIC = "line-allocated"


class AckingProducer:
    """Acknowledges every message at the next flush (or reports ``report`` for it); keeps
    what was acknowledged, in order."""

    def __init__(self, report: KafkaError | None = None) -> None:
        self.sent: list[tuple[str, str]] = []  # (key, event_id)
        self._queued: list[tuple[tuple[str, str], Callable[..., None]]] = []
        self.report = report

    def produce(self, topic: str, **kwargs: Any) -> None:
        event_id = dict(kwargs["headers"])["event_id"].decode()
        self._queued.append(((kwargs["key"].decode(), event_id), kwargs["on_delivery"]))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        queued, self._queued = self._queued, []
        for sent, on_delivery in queued:
            if self.report is None:
                self.sent.append(sent)
            on_delivery(self.report, None)
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = 0) -> SimpleNamespace:
        return SimpleNamespace(topics={TOPIC: SimpleNamespace(error=None)})


class JsonCodec:
    def encode_as(self, topic: str, record: dict[str, Any], version: int | None) -> bytes:
        return json.dumps(record, default=str).encode()


@pytest.fixture
def own_engine(settings: Settings) -> Iterator[Engine]:
    """A database of this test's own: the relay reads every pending row there is."""
    with fresh_database(settings) as fresh:
        upgrade_schema(fresh)
        engine = make_engine(fresh.sqlalchemy_url)
        yield engine
        engine.dispose()


def add_rows(engine: Engine, keys: list[str], per_key: int) -> None:
    with engine.begin() as connection:
        for n in range(per_key):
            for key in keys:  # keys interleaved, so every chunk holds several of each
                connection.execute(
                    insert(outbox_table).values(
                        event_id=uuid.uuid4(),
                        event_type="Allocated",
                        topic=TOPIC,
                        key=key,
                        payload={"orderid": f"o{n}", "sku": key, "qty": 1, "batchref": "b"},
                        occurred_at=datetime.now(UTC),
                    )
                )


def fail_once_on_the_mark_thread(monkeypatch: pytest.MonkeyPatch, nth: int) -> Callable[[], int]:
    """The ``nth`` mark made on the mark thread fails; returns how many failed."""
    real = outbox_publishing.mark_published
    calls = {"made": 0, "failed": 0}

    def mark(connection: Connection, ids: list[int]) -> None:
        if threading.current_thread().name.startswith("relay-mark"):
            calls["made"] += 1
            if calls["made"] == nth:
                calls["failed"] += 1
                raise OperationalError("UPDATE outbox", {}, Exception("connection lost"))
        real(connection, ids)

    monkeypatch.setattr(outbox_publishing, "mark_published", mark)
    return lambda: calls["failed"]


def test_a_mark_failing_while_the_next_chunk_is_sent_loses_and_reorders_nothing(
    own_engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [random_sku(f"mark{n}") for n in range(4)]
    add_rows(own_engine, keys, per_key=10)  # 40 rows, 10 chunks of 4
    failed = fail_once_on_the_mark_thread(monkeypatch, nth=2)
    producer = AckingProducer()
    relay = OutboxRelay(
        dsn=settings.database_url,
        engine=own_engine,
        producer_factory=lambda: producer,  # type: ignore[arg-type,return-value]
        codec=JsonCodec(),  # type: ignore[arg-type]
        stop=threading.Event(),
        policy=RelayPolicy(chunk_size=4),
    )
    rounds = 0
    while rounds < 50:
        rounds += 1
        try:
            if relay._publish_chunk() == 0:
                break
        except OperationalError:
            continue  # the relay's loop retries the round: from the first pending row
    relay.close()
    assert failed() == 1

    with own_engine.connect() as connection:
        rows = connection.execute(
            select(
                outbox_table.c.key, outbox_table.c.event_id, outbox_table.c.published_at
            ).order_by(outbox_table.c.id)
        ).all()
    assert [row.event_id for row in rows if row.published_at is None] == []  # none lost
    for key in keys:
        written = [str(row.event_id) for row in rows if row.key == key]
        copies = [event_id for sent_key, event_id in producer.sent if sent_key == key]
        first_copies = list(dict.fromkeys(copies))  # what a reader deduplicating by event_id keeps
        last_copies = list(dict.fromkeys(reversed(copies)))[::-1]
        assert first_copies == written, f"{key}: first copies out of commit order"
        assert last_copies == written, f"{key}: last copies out of commit order"
    assert len(producer.sent) > len(rows)  # the failed chunk, and the one after, went again


def test_commits_close_together_after_a_read_go_out_in_one_read(
    own_engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[set[str]] = []
    real = outbox_publishing.fetch_pending

    def noting(connection: Connection, limit: int, in_flight: list[int] | None = None) -> Any:
        rows = real(connection, limit, in_flight)
        if rows:
            reads.append({row.key for row in rows})
        return rows

    monkeypatch.setattr(outbox_publishing, "fetch_pending", noting)
    producer = AckingProducer()
    stop = threading.Event()
    relay = OutboxRelay(
        dsn=own_engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
        engine=own_engine,
        producer_factory=lambda: producer,  # type: ignore[arg-type,return-value]
        codec=JsonCodec(),  # type: ignore[arg-type]
        stop=stop,
        policy=RelayPolicy(chunk_size=100, poll_interval_s=1.0, gather_s=2.0),
    )
    running = threading.Thread(target=relay.run)
    running.start()
    try:
        assert relay.is_leader.wait(10)
        first, second, third = (random_sku(f"gather{n}") for n in range(3))
        add_rows(own_engine, [first], per_key=1)
        wait_until(lambda: any(key == first for key, _ in producer.sent), 10, "first sent")
        add_rows(own_engine, [second], per_key=1)  # its NOTIFY wakes the relay at once...
        stop.wait(0.3)
        add_rows(own_engine, [third], per_key=1)  # ...which reads both after the gather
        wait_until(lambda: any(key == third for key, _ in producer.sent), 10, "third sent")
    finally:
        stop.set()
        running.join(10)
    assert reads == [{first}, {second, third}]


def test_a_relay_closed_again_after_its_run_ended_closes_quietly(
    own_engine: Engine, settings: Settings
) -> None:
    stop = threading.Event()
    stop.set()  # run() returns at once, closing the relay on its way out
    relay = OutboxRelay(
        dsn=settings.database_url,
        engine=own_engine,
        producer_factory=AckingProducer,  # type: ignore[arg-type]
        codec=JsonCodec(),  # type: ignore[arg-type]
        stop=stop,
        policy=RelayPolicy(),
    )
    relay.run()
    relay.close()  # the caller's own cleanup, as after any run
    relay.close()


def test_a_producer_reporting_a_fatal_error_is_replaced_and_counted(
    own_engine: Engine,
) -> None:
    keys = [random_sku(f"fenced{n}") for n in range(2)]
    add_rows(own_engine, keys, per_key=3)
    fenced = KafkaError(KafkaError._FENCED, "producer fenced", fatal=True)
    made: list[AckingProducer] = []

    def factory() -> AckingProducer:
        made.append(AckingProducer(report=fenced if not made else None))
        return made[-1]

    before = clients_replaced("relay_producer", "fatal")
    stop = threading.Event()
    relay = OutboxRelay(
        dsn=own_engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
        engine=own_engine,
        producer_factory=factory,  # type: ignore[arg-type]
        codec=JsonCodec(),  # type: ignore[arg-type]
        stop=stop,
        policy=RelayPolicy(chunk_size=100, poll_interval_s=0.2),
    )
    running = threading.Thread(target=relay.run)
    running.start()
    try:
        wait_until(lambda: len(made) == 2 and len(made[1].sent) == 6, 20, "the rows sent again")
    finally:
        stop.set()
        running.join(10)
    assert made[0].sent == []  # nothing it was handed counted as sent
    assert clients_replaced("relay_producer", "fatal") == before + 1
    with own_engine.connect() as connection:
        pending = connection.execute(
            select(outbox_table.c.id).where(outbox_table.c.published_at.is_(None))
        ).all()
    assert pending == []
