"""A consumer group's positions as Kafka knows them: committed offsets, log ends, members.

For ``allocation offsets`` and ``allocation status``; the service's own truth is in PostgreSQL
(``offsets``).
A client that never subscribes only reads, so these never disturb the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from allocation.adapters.kafka import admin_client, consumer_config
from allocation.adapters.positions import Partition
from allocation.config import Settings

TIMEOUT = 10.0
# librdkafka's notices at exit ("Purging 1 unserved events") mean nothing to an operator.
QUIET = {"log_level": 3}


@dataclass(frozen=True)
class KafkaPosition:
    """One partition: the group's committed offset (None if it has none), and the log's ends."""

    topic: str
    partition: int
    committed: int | None
    earliest: int
    end: int

    @property
    def lag(self) -> int:
        """Records the group has yet to read: a group without a commit starts at the
        earliest (the consumers' ``auto.offset.reset``)."""
        return self.end - (self.earliest if self.committed is None else self.committed)


@contextmanager
def _reader(settings: Settings) -> Iterator[Consumer]:
    consumer = Consumer(consumer_config(settings, settings.consumer_group, "allocation-offsets"))
    try:
        yield consumer
    finally:
        consumer.close()


def positions(settings: Settings, topics: Iterable[str]) -> list[KafkaPosition]:
    """Every partition of these topics (missing topics are skipped), in order."""
    with _reader(settings) as consumer:
        metadata = consumer.list_topics(timeout=TIMEOUT)
        wanted = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in metadata.topics and metadata.topics[topic].error is None
            for p in sorted(metadata.topics[topic].partitions)
        ]
        committed = consumer.committed(wanted, timeout=TIMEOUT) if wanted else []
        found = []
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT)
            offset = tp.offset if tp.offset >= 0 else None
            found.append(KafkaPosition(tp.topic, tp.partition, offset, low, high))
        return found


def offsets_at(
    settings: Settings, partitions: Iterable[Partition], epoch_ms: int
) -> dict[Partition, int]:
    """The first offset of each partition written at or after ``epoch_ms`` (the log end if none)."""
    with _reader(settings) as consumer:
        asked = [TopicPartition(topic, p, epoch_ms) for topic, p in partitions]
        found = consumer.offsets_for_times(asked, timeout=TIMEOUT) if asked else []
        result = {}
        for tp in found:
            if tp.offset < 0:  # nothing that late: the end of the log
                _, tp.offset = consumer.get_watermark_offsets(tp, timeout=TIMEOUT)
            result[(tp.topic, tp.partition)] = tp.offset
        return result


def members(settings: Settings, group: str) -> int:
    """How many members ``group`` has now (0 for a group that does not exist)."""
    admin = admin_client(settings, **QUIET)
    [future] = admin.describe_consumer_groups([group], request_timeout=TIMEOUT).values()
    return len(future.result().members)


def commit(settings: Settings, group: str, offsets: dict[Partition, int]) -> None:
    """Set ``group``'s committed offsets in Kafka; the group must have no member."""
    admin: AdminClient = admin_client(settings, **QUIET)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
    )
    [future] = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT).values()
    future.result()
