"""The command consumer's partitions: where it starts in each, and what it tells Kafka.

PostgreSQL holds the truth of where the group reads next (``adapters/offsets``,
written in the transaction that applied a poll). On assignment the consumer
starts each partition at its stored offset; a partition with none (a new group,
a table just created) starts at Kafka's committed offset, else at
``auto.offset.reset``. Offsets are still committed to Kafka after each poll, for
lag monitoring and Kafka's own tools, but never read back while a stored one exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import suppress

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Message, TopicPartition

from allocation.adapters import metrics
from allocation.adapters.faults import is_transient
from allocation.adapters.positions import Partition, Positions, is_fatal
from allocation.entrypoints.retry import Backoff
from allocation.service_layer.ports import ConsumedOffset

logger = logging.getLogger(__name__)

StoredOffsets = Callable[[list[Partition]], dict[Partition, int]]
"""Reads the stored next offset of each partition that has one."""


class ConsumerBroken(Exception):
    """This client is done: librdkafka reported a fatal error (a fenced static member, say),
    or the client starved (``starvation``)."""

    def __init__(self, message: str, reason: str = "fatal") -> None:
        super().__init__(message)
        self.reason = reason  # the replacement's reason in metrics: fatal or starved


def next_offsets(group: str, messages: Iterable[Message]) -> list[ConsumedOffset]:
    """Where ``group`` reads next in each partition once these messages are applied."""
    ends: dict[Partition, int] = {}
    for message in messages:
        key = (str(message.topic()), message.partition() or 0)
        ends[key] = max(ends.get(key, 0), (message.offset() or 0) + 1)
    return [ConsumedOffset(group, topic, part, end) for (topic, part), end in sorted(ends.items())]


class Assignment:
    """The partitions this member owns, and the offsets it commits to Kafka."""

    def __init__(
        self, stored: StoredOffsets, backoff: Backoff, on_change: Callable[[], None]
    ) -> None:
        self._stored = stored
        self._backoff = backoff
        self._on_change = on_change
        self._positions = Positions()
        self.assigned: set[Partition] = set()

    def clear(self) -> None:
        """A new Kafka client starts afresh: its assignment comes with its first rebalance."""
        self._positions.clear()
        self.assigned.clear()

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each new partition at its stored offset (Kafka's committed one if none).

        Both group protocols the consumer speaks (KIP-848 and cooperative-sticky)
        assign incrementally; the offsets given here are where fetching starts.
        """
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        found = self._backoff.call(
            "read stored offsets", lambda: self._stored(wanted), is_transient
        )
        consumer.incremental_assign(
            [TopicPartition(t, p, found.get((t, p), OFFSET_INVALID)) for t, p in wanted]
        )
        logger.info(
            "assigned %s",
            ", ".join(f"{t}[{p}]@{found.get((t, p), 'kafka')}" for t, p in wanted) or "nothing",
        )
        self.assigned.update(wanted)
        self._on_change()

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("revoked %s", partition_list(partitions))
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        # Kafka's copy is brought up to date before the partitions move, for the tools
        # that read it; the next owner starts from PostgreSQL's either way.
        applied = self._offsets(set(revoked))
        if applied:
            try:
                consumer.commit(offsets=applied, asynchronous=False)
            except KafkaException as exc:
                logger.warning("offsets of revoked partitions not committed (%s)", exc)
        self._forget(revoked)

    def on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Already another member's: committing now could only overwrite its offsets.
        logger.warning("lost %s", partition_list(partitions))
        self._forget([(tp.topic, tp.partition) for tp in partitions])

    def commit(self, consumer: Consumer, messages: list[Message]) -> None:
        """Commit a poll's offsets to Kafka without waiting for the broker's answer.

        PostgreSQL already holds them: a commit that fails or is lost only leaves
        Kafka's copy (lag, tools) behind for a while.
        """
        moved = self._positions.advance(
            (str(m.topic()), m.partition() or 0, m.offset() or 0) for m in messages
        )
        try:
            consumer.commit(offsets=self._offsets(moved), asynchronous=True)
        except KafkaException as exc:
            if exc.args and is_fatal(exc.args[0]):
                raise ConsumerBroken(f"fatal error committing offsets: {exc}") from exc
            logger.warning("offset commit to Kafka failed (%s); PostgreSQL has them", exc)

    def commit_on_close(self, consumer: Consumer) -> None:
        if not self._positions:
            return
        try:
            consumer.commit(offsets=self._offsets(), asynchronous=False)
        except KafkaException as exc:
            logger.warning("final offset commit to Kafka failed (%s); PostgreSQL has them", exc)

    def _offsets(self, partitions: set[Partition] | None = None) -> list[TopicPartition]:
        return [TopicPartition(*position) for position in self._positions.to_commit(partitions)]

    def _forget(self, revoked: list[Partition]) -> None:
        self._positions.forget(revoked)
        self.assigned.difference_update(revoked)
        for topic, partition in revoked:
            with suppress(KeyError):  # never reported
                metrics.CONSUMER_LAG.remove(topic, str(partition))
        self._on_change()


def partition_list(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
