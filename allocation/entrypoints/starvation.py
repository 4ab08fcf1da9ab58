"""Notices a command consumer that fetches nothing from a partition while messages wait.

librdkafka can keep a partition on no leader for good once its leader was lost and came
back (a broker's controlled shutdown under load, librdkafka #5430): the client stays
connected and in its group, fetches nothing from that partition, and raises no error,
while its other partitions may go on as usual. The partition's lag would grow until
someone restarted the consumer.

Once every ``after_s`` the consumer looks at each assigned partition it has fetched
nothing from for ``after_s``: the broker's end offset against the offset stored with the
last applied poll. More than one record between them (one can be the marker that ends a
transaction, which a committed reader never gets) at two samples in a row, with nothing
fetched in between, is messages that waited at least ``after_s``: the consumer is
replaced, as on a fatal error, and the new client resumes from the stored offsets. Where
nothing is stored, Kafka's committed offset stands in, and where neither is, the
partition's first offset (``auto.offset.reset`` is earliest). A partition whose end or
stored offset cannot be read is left out of that round: a broker
or a database that is down is waited out, not a reason to replace the client. An aborted
transaction at a partition's end (records no committed reader gets) costs at most one
needless replacement, which loses and doubles nothing: a partition is not judged starved
again at an end it was already replaced for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from allocation.adapters.positions import Partition
from allocation.entrypoints.assignment import ConsumerBroken, StoredOffsets

logger = logging.getLogger(__name__)


class Starvation:
    """Samples the backlog of the partitions a consumer fetches nothing from."""

    def __init__(
        self,
        after_s: float,
        stored: StoredOffsets,
        query_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._after_s = after_s
        self._stored = stored
        self._query_timeout_s = query_timeout_s
        self._clock = clock
        self._fed_at: dict[Partition, float] = {}
        self._waiting: set[Partition] = set()  # more than one record waited at the last sample
        self._replaced_at_end: dict[Partition, int] = {}
        self._sampled_at = clock()

    def fed(self, partitions: Iterable[Partition]) -> None:
        """A poll brought messages of these partitions."""
        now = self._clock()
        for partition in partitions:
            self._fed_at[partition] = now
            self._waiting.discard(partition)

    def reset(self) -> None:
        """A new client: its partitions are watched afresh once assigned."""
        self._fed_at.clear()
        self._waiting.clear()

    def check(self, consumer: Consumer, assigned: Iterable[Partition]) -> None:
        """After each poll; a sample once every ``after_s``. Raises ConsumerBroken when a
        partition is starved."""
        now = self._clock()
        if now - self._sampled_at < self._after_s:
            return
        self._sampled_at = now
        owned = set(assigned)
        for gone in self._fed_at.keys() - owned:
            del self._fed_at[gone]
        quiet = sorted(p for p in owned if now - self._fed_at.setdefault(p, now) >= self._after_s)
        if not quiet:
            return
        backlog = self._backlog(consumer, quiet)
        starved = {p: n for p, (end, n) in backlog.items() if p in self._waiting and n > 1}
        self._waiting = {p for p, (end, n) in backlog.items() if n > 1}
        if starved:
            self._replaced_at_end.update({p: backlog[p][0] for p in starved})
            self.reset()
            listed = ", ".join(f"{t}[{p}] {n} waiting" for (t, p), n in sorted(starved.items()))
            raise ConsumerBroken(
                f"nothing fetched for {self._after_s:.0f} s or more from partitions where"
                f" messages wait ({listed}): the client may have lost their leader"
                " (librdkafka #5430)",
                reason="starved",
            )

    def _backlog(
        self, consumer: Consumer, quiet: list[Partition]
    ) -> dict[Partition, tuple[int, int]]:
        """Each quiet partition's end and the records beyond where the group reads next,
        where known and where the end is not one it was already replaced for."""
        try:
            start = self._stored(quiet)
        except Exception as exc:  # the watch never stops the consumer: this round judges nothing
            logger.warning("stored offsets unreadable for the starvation check: %s", exc)
            return {}
        start |= self._committed(consumer, [p for p in quiet if p not in start])
        deadline = self._clock() + 2 * self._query_timeout_s
        backlog: dict[Partition, tuple[int, int]] = {}
        for partition in quiet:
            bounds = self._bounds(consumer, partition) if self._clock() < deadline else None
            if bounds is None or bounds[1] <= self._replaced_at_end.get(partition, -1):
                continue
            low, end = bounds
            # Neither stored nor committed: the group starts at the earliest (auto.offset.reset).
            backlog[partition] = (end, end - start.get(partition, low))
        return backlog

    def _committed(self, consumer: Consumer, partitions: list[Partition]) -> dict[Partition, int]:
        """Kafka's committed offsets, for partitions with none stored (a group from before
        offsets were kept in PostgreSQL)."""
        if not partitions:
            return {}
        try:
            found = consumer.committed(
                [TopicPartition(t, p) for t, p in partitions], timeout=self._query_timeout_s
            )
        except KafkaException:
            return {}
        return {(str(tp.topic), tp.partition): tp.offset for tp in found if tp.offset >= 0}

    def _bounds(self, consumer: Consumer, partition: Partition) -> tuple[int, int] | None:
        topic, part = partition
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, part), timeout=self._query_timeout_s, cached=False
            )
        except KafkaException:
            return None  # unknown this round: not judged
        return int(low), int(high)
