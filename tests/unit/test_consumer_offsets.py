"""Offsets kept with the data: saved in the poll's transaction, read back on assignment."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, Message, TopicPartition

from allocation.domain.errors import InvalidSku
from allocation.entrypoints.assignment import Assignment
from allocation.entrypoints.retry import Backoff
from allocation.service_layer.ports import ConsumedOffset
from tests.consumer_fakes import TOPIC, FakeBus, FakeProducer, consumer, database_error, poll


def test_a_poll_saves_its_offsets_in_the_transaction_that_applied_it() -> None:
    bus = FakeBus(lambda _: None)
    consumer(bus, FakeProducer()).process(poll("o1", "o2", "o3"))

    assert bus.transactions == [(["o1", "o2", "o3"], [ConsumedOffset("allocation", TOPIC, 0, 3)])]


def test_offsets_past_a_dead_letter_are_saved_only_once_the_letter_is_acknowledged() -> None:
    timeline: list[str] = []

    class RecordingBus(FakeBus):
        def save_offsets(self, offsets: Any) -> None:
            timeline.append(f"offsets {[o.next_offset for o in offsets]}")
            super().save_offsets(offsets)

    class RecordingProducer(FakeProducer):
        def flush(self, timeout: float) -> int:
            timeline.append("dead letter acknowledged")
            return super().flush(timeout)

    bus = RecordingBus(lambda _: None)
    undecodable = Message(topic=TOPIC, partition=0, offset=1, key=b"k", value=b"{", headers=[])
    messages = poll("o1", "-", "o3")
    consumer(bus, RecordingProducer()).process([messages[0], undecodable, messages[2]])

    assert bus.transactions[0] == (["o1", "o3"], [])  # the commands, without the offsets
    assert timeline == ["dead letter acknowledged", "offsets [3]"]


def test_a_poll_applied_one_by_one_saves_its_offsets_after_its_rejections() -> None:
    def o2_is_unknown(command: Any) -> Exception | None:
        return InvalidSku("unknown sku") if command.orderid == "o2" else None

    bus = FakeBus(o2_is_unknown)
    dlq = FakeProducer()
    consumer(bus, dlq).process(poll("o1", "o2", "o3"))

    assert [orderids for orderids, _ in bus.transactions] == [["o1"], ["o3"], []]
    assert bus.transactions[-1][1] == [ConsumedOffset("allocation", TOPIC, 0, 3)]
    assert len(dlq.sent) == 1


class AssigningConsumer:
    def __init__(self) -> None:
        self.assigned: list[tuple[str, int, int]] = []

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned.extend((tp.topic, tp.partition, tp.offset) for tp in partitions)


def test_an_assigned_partition_starts_at_its_stored_offset_else_where_kafka_says() -> None:
    stored = {(TOPIC, 0): 7}
    assignment = Assignment(
        lambda wanted: {p: o for p, o in stored.items() if p in wanted},
        Backoff(threading.Event()),
        lambda: None,
    )
    kafka = AssigningConsumer()
    assignment.on_assign(kafka, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])  # type: ignore[arg-type]

    assert kafka.assigned == [(TOPIC, 0, 7), (TOPIC, 1, OFFSET_INVALID)]
    assert assignment.assigned == {(TOPIC, 0), (TOPIC, 1)}


@pytest.mark.timeout(20)
def test_offsets_that_cannot_be_saved_pause_consumption_until_they_can() -> None:
    failures = [database_error("42P01", 'relation "consumer_offsets" does not exist')]

    class TableMissingOnce(FakeBus):
        def save_offsets(self, offsets: Any) -> None:
            if failures:
                raise failures.pop()
            super().save_offsets(offsets)

    bus = TableMissingOnce(lambda _: None)
    dlq = FakeProducer()
    undecodable = Message(topic=TOPIC, partition=0, offset=0, key=b"k", value=b"{", headers=[])
    process = consumer(bus, dlq)
    process.process([undecodable])

    assert bus.transactions == [([], [ConsumedOffset("allocation", TOPIC, 0, 1)])]
    assert not process.paused
    assert len(dlq.sent) == 2  # the letter again with the poll: dead letters are at least once
