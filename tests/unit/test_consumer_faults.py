"""The consumer's decisions on failure, around the fakes of tests/consumer_fakes.py."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from confluent_kafka import Message

from allocation.domain import commands
from allocation.entrypoints.retry import Stopped
from tests.consumer_fakes import TOPIC, FakeBus, FakeProducer, consumer, database_error, poll


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


@pytest.mark.timeout(20)
def test_after_a_dead_letter_timed_out_the_next_try_is_on_a_new_producer() -> None:
    """librdkafka can keep a producer on no partition leader for good (its #5430): one whose
    dead letters timed out is not tried again."""
    stuck, fresh = FakeProducer(outages=1_000), FakeProducer()
    producers = iter([stuck, fresh])
    bus = FakeBus(lambda c: InterruptedError() if c.orderid == "bad" else None)
    process = consumer(bus, lambda: next(producers))
    process.process(poll("bad"))
    assert list(fresh.letters()) == ["bad"]
    assert stuck.letters() == {}


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
