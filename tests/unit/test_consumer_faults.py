"""The consumer's decisions on failure, with fakes for Kafka, the codec and the bus."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2
import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc

from allocation.domain import commands
from allocation.entrypoints.consumer import CommandConsumer
from allocation.entrypoints.retry import Stopped
from allocation.service_layer.messagebus import Outcome
from allocation.service_layer.ports import ConsumedOffset
from allocation.service_layer.unit_of_work import Envelope

TOPIC = "allocate"


def database_error(code: str, message: str) -> sa_exc.DBAPIError:
    original = pg_errors.lookup(code)(message)
    statement = "INSERT INTO allocations_view VALUES (%(orderid)s)"
    return sa_exc.DBAPIError.instance(statement, {"orderid": "o-secret"}, original, psycopg2.Error)


class FakeKafkaConsumer:
    def __init__(self) -> None:
        self.committed: list[TopicPartition] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed.extend(offsets)

    def close(self) -> None:
        pass


class FakeProducer:
    """Acknowledges every dead letter, after failing the first ``outages`` flushes."""

    def __init__(self, outages: int = 0) -> None:
        self.outages = outages
        self.sent: list[dict[str, Any]] = []
        self._pending: list[tuple[dict[str, Any], Callable[..., None]]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._pending.append(({"topic": topic, **kwargs}, kwargs["on_delivery"]))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        pending, self._pending = self._pending, []
        for sent, on_delivery in pending:
            if self.outages:
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            else:
                self.sent.append(sent)
                on_delivery(None, None)
        self.outages = max(0, self.outages - 1)
        return 0

    def letters(self) -> dict[str, dict[str, bytes]]:
        """Each letter's headers, by the order id in its value."""
        return {json.loads(s["value"])["orderid"]: dict(s["headers"]) for s in self.sent}


class FakeCodec:
    def decode(self, topic: str, value: bytes | None) -> dict[str, Any]:
        return dict(json.loads(value or b"null"))


class FakeBus:
    """Applies every command unless ``fail(command)`` returns an error to raise."""

    def __init__(self, fail: Callable[[commands.Allocate], Exception | None]) -> None:
        self.fail = fail
        self.applied: list[str] = []
        # What each committed transaction held: order ids applied, offsets saved.
        self.transactions: list[tuple[list[str], list[ConsumedOffset]]] = []

    def handle_many(
        self,
        items: Sequence[tuple[commands.Command, Envelope | None]],
        offsets: Sequence[ConsumedOffset] = (),
    ) -> list[Outcome]:
        for command, _ in items:
            assert isinstance(command, commands.Allocate)
            if (error := self.fail(command)) is not None:
                raise error
        orderids = [c.orderid for c, _ in items if isinstance(c, commands.Allocate)]
        self.applied.extend(orderids)
        self.transactions.append((orderids, list(offsets)))
        return [Outcome() for _ in items]

    def save_offsets(self, offsets: Sequence[ConsumedOffset]) -> None:
        self.transactions.append(([], list(offsets)))

    def handle(self, command: commands.Command, envelope: Envelope | None = None) -> Outcome:
        return self.handle_many([(command, envelope)])[0]


def consumer(
    bus: FakeBus, dlq: FakeProducer, attempts: int = 1, stop: threading.Event | None = None
) -> CommandConsumer:
    return CommandConsumer(
        consumer_factory=FakeKafkaConsumer,  # type: ignore[arg-type]
        dlq=dlq,  # type: ignore[arg-type]
        dlq_topic="allocation-dlq",
        codec=FakeCodec(),  # type: ignore[arg-type]
        bus=bus,  # type: ignore[arg-type]
        records={TOPIC: "Allocate"},
        stop=stop or threading.Event(),
        group="allocation",
        stored_offsets=lambda _: {},
        unexpected_attempts=attempts,
    )


def message(orderid: str, offset: int, sku: str = "LAMP") -> Message:
    value = json.dumps({"orderid": orderid, "sku": sku, "qty": 1}).encode()
    return Message(
        topic=TOPIC, partition=0, offset=offset, key=sku.encode(), value=value, headers=[]
    )


def poll(*orderids: str) -> list[Message]:
    return [message(orderid, offset) for offset, orderid in enumerate(orderids)]


@pytest.mark.timeout(20)
def test_a_missing_table_pauses_consumption_dead_letters_nothing_and_resumes() -> None:
    paused_while_failing: list[bool] = []
    dlq = FakeProducer()

    def missing_table_twice(_: commands.Allocate) -> Exception | None:
        paused_while_failing.append(process.paused)
        if len(paused_while_failing) <= 2:
            return database_error("42P01", 'relation "products" does not exist')
        return None

    bus = FakeBus(missing_table_twice)
    process = consumer(bus, dlq)
    process.process(poll("o1", "o2"))

    assert dlq.sent == []
    assert paused_while_failing[:3] == [False, True, True]
    assert not process.paused
    assert bus.applied == ["o1", "o2"]
    assert process.dead_lettered == 0


@pytest.mark.timeout(20)
def test_a_stop_while_paused_ends_the_wait_and_dead_letters_nothing() -> None:
    stop, dlq = threading.Event(), FakeProducer()

    def missing_table(_: commands.Allocate) -> Exception | None:
        if process.paused:
            stop.set()  # SIGTERM arrives while paused
        return database_error("42P01", 'relation "products" does not exist')

    process = consumer(FakeBus(missing_table), dlq, stop=stop)
    with pytest.raises(Stopped):
        process.process(poll("o1"))
    assert dlq.sent == []


@pytest.mark.timeout(20)
def test_a_value_the_database_refuses_is_dead_lettered_alone_without_its_sql() -> None:
    dlq = FakeProducer()

    def index_row_too_big(command: commands.Allocate) -> Exception | None:
        if command.orderid == "huge":
            return database_error("54000", "index row size 3080 exceeds btree maximum 2704")
        return None

    bus = FakeBus(index_row_too_big)
    process = consumer(bus, dlq)
    process.process(poll("o1", "huge", "o2"))

    assert bus.applied == ["o1", "o2"]
    letter = dlq.letters()["huge"]
    assert list(dlq.letters()) == ["huge"]
    assert letter["error_type"] == b"ProgramLimitExceeded"
    reason = letter["error_message"].decode()
    assert reason == "SQLSTATE 54000: index row size 3080 exceeds btree maximum 2704"
    assert "o-secret" not in reason


@pytest.mark.timeout(20)
def test_the_same_unexpected_error_on_consecutive_messages_pauses_instead_of_dead_lettering() -> (
    None
):
    calls: list[str] = []
    dlq = FakeProducer()

    def broken_until_fixed(command: commands.Allocate) -> Exception | None:
        calls.append(command.orderid)
        return RuntimeError("cannot adapt type") if len(calls) <= 4 else None

    bus = FakeBus(broken_until_fixed)
    process = consumer(bus, dlq)
    process.process(poll("o1", "o2", "o3"))

    assert dlq.sent == []
    assert bus.applied == ["o1", "o2", "o3"]


@pytest.mark.timeout(20)
def test_one_unexpected_error_on_a_lone_message_is_its_poison() -> None:
    dlq = FakeProducer()
    bus = FakeBus(lambda c: RuntimeError("odd") if c.orderid == "odd" else None)
    process = consumer(bus, dlq)
    process.process(poll("o1", "odd", "o2"))

    assert bus.applied == ["o1", "o2"]
    assert dlq.letters()["odd"]["error_message"] == b"unexpected error: odd"


@pytest.mark.timeout(20)
def test_a_dead_letter_queue_outage_is_waited_out() -> None:
    dlq = FakeProducer(outages=2)
    bus = FakeBus(lambda c: InterruptedError() if c.orderid == "bad" else None)
    process = consumer(bus, dlq)
    process.process(poll("bad"))
    assert list(dlq.letters()) == ["bad"]


class HostileHeaders(Message):
    """What confluent-kafka does with a header name that is not UTF-8."""

    def headers(self) -> Any:
        raise SystemError("<method 'headers'> returned a result with an exception set")


@pytest.mark.timeout(20)
def test_headers_that_do_not_decode_are_taken_as_absent() -> None:
    bus = FakeBus(lambda _: None)
    process = consumer(bus, FakeProducer())
    value = json.dumps({"orderid": "o1", "sku": "LAMP", "qty": 1}).encode()
    process.process([HostileHeaders(topic=TOPIC, partition=0, offset=7, value=value)])
    assert bus.applied == ["o1"]
