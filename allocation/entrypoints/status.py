"""``allocation status``: consumer lag, outbox backlog, dead letters and the relay leader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, Row, text

from allocation.adapters import outbox
from allocation.adapters.kafka import consumer_config
from allocation.adapters.tables import LEADER_LOCK
from allocation.config import Settings


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0) if self.committed is not None else self.end


def consumer_lag(settings: Settings, timeout: float = 10.0) -> list[PartitionLag]:
    # A consumer that never subscribes only reads the group's committed offsets.
    consumer = Consumer(consumer_config(settings, settings.consumer_group, "allocation-status"))
    try:
        metadata = consumer.list_topics(timeout=timeout)
        partitions = [
            TopicPartition(topic, p)
            for topic in settings.command_topics
            if topic in metadata.topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
        committed = consumer.committed(partitions, timeout=timeout) if partitions else []
        lags = []
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            offset = tp.offset if tp.offset >= 0 else None
            lags.append(PartitionLag(tp.topic, tp.partition, offset, high))
        return lags
    finally:
        consumer.close()


def dead_letter_count(settings: Settings, timeout: float = 10.0) -> int:
    consumer = Consumer(consumer_config(settings, "allocation-status", "allocation-status"))
    try:
        metadata = consumer.list_topics(settings.topic_dlq, timeout=timeout)
        topic = metadata.topics.get(settings.topic_dlq)
        if topic is None or topic.error is not None:
            return 0
        total = 0
        for p in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.topic_dlq, p), timeout=timeout
            )
            total += high - low
        return total
    finally:
        consumer.close()


def relay_leader_backend(engine: Engine) -> Row[Any] | None:
    """The backend holding the relay leader lock of this database (pid, client_addr,
    application_name), if any relay leads."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT a.pid, a.client_addr, a.application_name "
                "FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = :c AND l.objid = :o AND l.objsubid = 2"
            ),
            {"c": LEADER_LOCK[0], "o": LEADER_LOCK[1]},
        ).first()


def relay_leader(engine: Engine) -> str | None:
    """The backend holding the relay leader lock, as `allocation status` shows it."""
    row = relay_leader_backend(engine)
    return None if row is None else f"backend pid {row.pid} ({row.client_addr or 'local'})"


def render(settings: Settings, engine: Engine) -> str:
    lines = [f"consumer group {settings.consumer_group}"]
    lines.append(f"  {'topic':<20} {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
    lags = consumer_lag(settings)
    for lag in lags:
        committed = "-" if lag.committed is None else str(lag.committed)
        lines.append(
            f"  {lag.topic:<20} {lag.partition:>9} {committed:>10} {lag.end:>10} {lag.lag:>8}"
        )
    lines.append(f"  total lag {sum(lag.lag for lag in lags)}")
    with engine.connect() as connection:
        backlog = outbox.backlog(connection)
    age = "-" if backlog.oldest_pending_age_s is None else f"{backlog.oldest_pending_age_s:.1f}s"
    lines.append(
        f"outbox: {backlog.pending} pending ({backlog.retrying} retrying), "
        f"{backlog.parked} parked, oldest pending {age}"
    )
    lines.append(f"relay leader: {relay_leader(engine) or 'none'}")
    lines.append(f"dead letters in {settings.topic_dlq}: {dead_letter_count(settings)}")
    return "\n".join(lines)
