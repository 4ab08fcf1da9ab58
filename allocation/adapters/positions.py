"""Offset bookkeeping of the command consumer, as plain values: testable without a broker."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError

Partition = tuple[str, int]
"""(topic, partition)"""


class Positions:
    """The next offset of each partition whose messages have been applied.

    Only these offsets are ever committed, so a commit never covers a message
    that was not applied; a partition revoked is forgotten, so its new owner's
    commits are never overwritten with older ones.
    """

    def __init__(self) -> None:
        self._next: dict[Partition, int] = {}

    def __bool__(self) -> bool:
        return bool(self._next)

    def advance(self, applied: Iterable[tuple[str, int, int]]) -> set[Partition]:
        """Note (topic, partition, offset) of messages applied; returns the partitions moved."""
        moved = set()
        for topic, partition, offset in applied:
            key = (topic, partition)
            self._next[key] = max(self._next.get(key, -1), offset + 1)
            moved.add(key)
        return moved

    def to_commit(self, partitions: set[Partition] | None = None) -> list[tuple[str, int, int]]:
        """(topic, partition, next offset) of these partitions, or of all."""
        return [
            (topic, partition, offset)
            for (topic, partition), offset in self._next.items()
            if partitions is None or (topic, partition) in partitions
        ]

    def forget(self, partitions: Iterable[Partition]) -> None:
        """These partitions were revoked: their offsets are another member's to commit now."""
        for key in partitions:
            self._next.pop(key, None)

    def clear(self) -> None:
        self._next.clear()


def is_fatal(error: KafkaError) -> bool:
    """An error after which this Kafka client can do nothing more."""
    # A consumer's fatal error reaches the application as code _FATAL, not always flagged.
    return bool(error.fatal() or error.code() == KafkaError._FATAL)
