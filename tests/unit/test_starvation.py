"""When the consumer counts itself starved of a partition, and when it does not."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from sqlalchemy.exc import OperationalError

from allocation.adapters.positions import Partition
from allocation.entrypoints.assignment import ConsumerBroken
from allocation.entrypoints.starvation import Starvation

AFTER_S = 10.0
P0, P1 = ("allocate", 0), ("allocate", 1)


class World:
    """The clock, the broker's partition ends and the database's stored offsets."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.ends = {P0: 100, P1: 100}
        self.stored = {P0: 100, P1: 100}
        self.committed_offsets: dict[Partition, int] = {}
        self.low = 40
        self.broker_down = False
        self.database_down = False
        self.asked = 0

    def clock(self) -> float:
        return self.now

    def get_watermark_offsets(self, tp: TopicPartition, **_: Any) -> tuple[int, int]:
        self.asked += 1
        if self.broker_down:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return self.low, self.ends[(tp.topic, tp.partition)]

    def committed(self, tps: list[TopicPartition], **_: Any) -> list[TopicPartition]:
        if self.broker_down:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return [
            TopicPartition(
                tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001)
            )
            for tp in tps
        ]

    def read_stored(self, partitions: list[Partition]) -> dict[Partition, int]:
        if self.database_down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return {p: self.stored[p] for p in partitions if p in self.stored}

    def arrive(self, partition: Partition, count: int) -> None:
        self.ends[partition] += count

    def apply(self, partition: Partition) -> None:
        self.stored[partition] = self.ends[partition]


def watch() -> tuple[Starvation, World]:
    world = World()
    return Starvation(AFTER_S, world.read_stored, clock=world.clock), world


def step(starvation: Starvation, world: World) -> None:
    world.now += AFTER_S
    starvation.check(world, [P0, P1])  # type: ignore[arg-type]


def steps_until_broken(starvation: Starvation, world: World, rounds: int = 6) -> str:
    for _ in range(rounds):
        try:
            step(starvation, world)
        except ConsumerBroken as broken:
            return str(broken)
    raise AssertionError(f"not counted as starved in {rounds} rounds")


def test_idle_partitions_are_never_starved_even_with_a_transaction_marker_at_the_end() -> None:
    starvation, world = watch()
    world.arrive(P1, 1)  # the marker that ended a transaction: no reader ever gets it
    for _ in range(20):
        step(starvation, world)
    assert world.asked > 0


def test_messages_waiting_at_two_samples_with_nothing_fetched_are_starvation() -> None:
    starvation, world = watch()
    step(starvation, world)  # the partitions are first seen: their clocks start
    world.arrive(P1, 7)
    message = steps_until_broken(starvation, world)
    assert "allocate[1] 7 waiting" in message
    assert "librdkafka #5430" in message
    assert "allocate[0]" not in message


def test_messages_fetched_soon_after_a_sample_are_not_starvation() -> None:
    starvation, world = watch()
    step(starvation, world)
    step(starvation, world)
    for _ in range(5):
        world.arrive(P0, 3)
        step(starvation, world)  # sampled while they wait...
        world.now += 0.01
        starvation.fed([P0])  # ...and fetched right after
        world.apply(P0)


def test_a_busy_partition_does_not_hide_a_starved_one() -> None:
    starvation, world = watch()

    def round_with_p0_fetched() -> None:
        world.arrive(P0, 50)
        world.arrive(P1, 5)
        world.now += AFTER_S
        starvation.fed([P0])  # P0 fetched all along, P1 never
        world.apply(P0)
        starvation.check(world, [P0, P1])  # type: ignore[arg-type]

    round_with_p0_fetched()  # first seen
    round_with_p0_fetched()  # P1 waiting at one sample
    with pytest.raises(ConsumerBroken, match=r"allocate\[1\] 15 waiting") as broken:
        round_with_p0_fetched()  # and at the next
    assert "allocate[0]" not in str(broken.value)


@pytest.mark.parametrize("down", ["broker_down", "database_down"])
def test_a_backlog_that_cannot_be_read_is_not_judged(down: str) -> None:
    starvation, world = watch()
    world.arrive(P0, 9)
    setattr(world, down, True)
    for _ in range(10):
        step(starvation, world)


def test_with_no_stored_offset_the_committed_one_stands_in() -> None:
    starvation, world = watch()
    del world.stored[P0]  # a group from before offsets were kept in PostgreSQL
    world.committed_offsets[P0] = 99  # Kafka's: the marker at 99 is all that is left
    for _ in range(10):
        step(starvation, world)
    world.arrive(P0, 5)
    assert "allocate[0] 6 waiting" in steps_until_broken(starvation, world)


def test_with_no_offset_anywhere_the_group_starts_at_the_first() -> None:
    starvation, world = watch()
    del world.stored[P0]  # a new group: it reads from the first offset, 40
    assert "allocate[0] 60 waiting" in steps_until_broken(starvation, world)


def test_an_end_no_reader_gets_costs_one_replacement_then_new_messages_are_judged() -> None:
    starvation, world = watch()
    world.arrive(P0, 4)  # an aborted transaction: three records and its marker
    assert "allocate[0] 4 waiting" in steps_until_broken(starvation, world)
    for _ in range(10):  # the new client gets nothing either: not replaced again
        step(starvation, world)
    world.arrive(P0, 2)  # and then the partition does starve
    assert "allocate[0] 6 waiting" in steps_until_broken(starvation, world)
