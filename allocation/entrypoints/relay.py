"""The outbox relay: publishes committed outbox rows to Kafka, in commit order per key.

One relay leads at a time: the one holding a PostgreSQL advisory lock on its
own connection (``leadership``). Others wait as hot standbys and take over
within about ``standby_poll_s`` of the leader's session ending (its process
died, or it went silent). A systemic fault pauses the leader (``relay_pause``).

The leader wakes on NOTIFY (sent by a trigger when outbox rows commit) or
after ``poll_interval_s``. It produces a chunk of rows with an idempotent producer,
waits for every acknowledgement, and only then marks the acknowledged rows
published. A crash between the two re-publishes rows with the same event_id.
A full chunk acknowledged whole is marked on a thread of its own while the next
chunk is read and sent (``relay_marks``: in order, a failed mark starts again from
the first pending row).
How a chunk is handed to the producer is ``relay_sending``'s.
A row that can never be sent (it does not encode, or the broker refuses it for
good) is retried with growing delays, holding back only its own key, and is
parked for an operator after ``max_attempts``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Producer
from sqlalchemy import Connection, Engine

from allocation import bootstrap
from allocation.adapters import metrics, outbox_operations, outbox_publishing
from allocation.adapters.avro import AvroCodec
from allocation.adapters.faults import is_transient
from allocation.adapters.held import HeldConnection
from allocation.adapters.outbox_publishing import PendingRow
from allocation.adapters.tables import OUTBOX_CHANNEL
from allocation.config import Settings
from allocation.entrypoints.health import Health
from allocation.entrypoints.leadership import LeaderLock
from allocation.entrypoints.relay_marks import Marks
from allocation.entrypoints.relay_pause import RelayPause
from allocation.entrypoints.relay_policy import RelayPolicy
from allocation.entrypoints.relay_sending import ChunkSender, NotDelivered
from allocation.entrypoints.retry import Backoff, Stopped

logger = logging.getLogger(__name__)


class ProducerBroken(Exception):
    """librdkafka reported a fatal error (the idempotent producer was fenced): build a new one."""


class OutboxRelay:
    """Publishes the outbox while it holds the leader lock; waits as a standby otherwise."""

    def __init__(
        self,
        dsn: str,
        engine: Engine,
        producer_factory: Callable[[], Producer],
        codec: AvroCodec,
        stop: threading.Event,
        policy: RelayPolicy,
        health: Health | None = None,
    ) -> None:
        self._dsn = dsn
        self._engine = engine
        self._sender = ChunkSender(producer_factory, codec, stop)
        self._stop = stop
        self._policy = policy
        self._next_observation = 0.0
        self._backoff = Backoff(stop)
        self.health = health or Health()
        self._pause = RelayPause(stop, self.health)
        self._lock: LeaderLock | None = None
        self.is_leader = threading.Event()
        self.published = 0
        self._marks = Marks(engine, _count_published)
        # Reads, backlog checks and the marks of short chunks: single statements, sent on
        # one connection in autocommit while this relay leads.
        self._held = HeldConnection(engine)

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._backoff.call("relay", self._lead_once, is_transient)
                except ProducerBroken as exc:
                    # Unsent rows stay pending: the new producer sends them again.
                    logger.error("%s; replacing the Kafka producer", exc)
                    self._sender.renew("fatal")
                except Exception as exc:  # not leading (yet): nothing held while paused
                    self._pause.hold(exc)
        except Stopped:
            pass
        finally:
            self.close()
            self._sender.producer.flush(10)

    def close(self) -> None:
        """Wait for the mark in flight and let go of the held connections (``run`` ends so)."""
        self._held.drop()
        self._marks.close()

    def _lead_once(self) -> None:
        """Wait for the leader lock, then publish until stopped or the lock is lost."""
        self.health.not_ready("connecting to the database")
        lock = LeaderLock(self._dsn)
        try:
            self._pause.lift("standby: another relay leads")
            self.health.ready("standby: another relay leads")
            if not self._acquire(lock):
                return
            logger.info("relay is the leader")
            self._lock = lock
            self.is_leader.set()
            self.health.ready("leader")
            metrics.RELAY_LEADER.set(1)
            lock.listen(OUTBOX_CHANNEL)
            while not self._stop.is_set():
                self.health.beat()
                try:
                    self._lead_one_round(lock)
                except ProducerBroken:
                    raise
                except Exception as exc:  # a systemic fault keeps the lock (see relay_pause)
                    self._held.drop()
                    self._marks.settle()
                    self._pause.hold(exc, wait=lock.wait_for_notify)
                    continue
                self._pause.lift("leader")
        finally:
            self._held.drop()
            self._marks.settle()
            self._lock = None
            self.is_leader.clear()
            metrics.RELAY_LEADER.set(0)
            self.health.not_ready("not connected to the database")
            lock.close()

    def _lead_one_round(self, lock: LeaderLock) -> None:
        self._observe_backlog()
        began = time.monotonic()
        if self._publish_chunk() < self._policy.chunk_size:
            lock.wait_for_notify(self._policy.poll_interval_s)
            # Caught up: a burst of small commits (the API's, one per request) would each cost
            # a read, a produce request and a mark. Waiting out the rest of ``gather_s`` since
            # this read began takes them together; a lone commit after a quiet spell waits not
            # at all, and a full chunk (a backlog) never waits.
            rest = self._policy.gather_s - (time.monotonic() - began)
            if rest > 0:
                self._stop.wait(rest)
        else:
            lock.confirm()  # busy: no wait for NOTIFY confirms the lock, so ask now

    def _acquire(self, lock: LeaderLock) -> bool:
        while not self._stop.is_set():
            self.health.beat()
            if lock.try_acquire():
                return True
            self._stop.wait(self._policy.standby_poll_s)
        return False

    def _publish_chunk(self) -> int:
        held = self._held.get()
        rows = outbox_publishing.fetch_pending(held, self._policy.chunk_size, self._marks.in_flight)
        if not rows:
            self._marks.finish()
            return 0
        self._confirm()  # the fence: hand rows to the producer only as the leader
        delivery = self._sender.send(rows, self._confirm)
        self.published += len(delivery.acked)
        # The previous chunk's mark commits before this one's. If it failed, this raises and
        # the next round reads from the first pending row: both chunks go out again.
        self._marks.finish()
        if len(rows) == self._policy.chunk_size and delivery.all_acked(len(rows)):
            self._marks.submit(rows)  # marked while the next chunk is read and sent
            return len(rows)
        # A short chunk (idle next: nothing left unmarked) or one with failures (their keys
        # must be held back before anything is read again) is marked here and now.
        published = delivery.publishable()
        if delivery.refused:  # the marks and the held-back rows commit together
            with self._engine.begin() as connection:
                outbox_publishing.mark_published(connection, published)
                for row, error in delivery.refused:
                    self._hold_back(connection, row, error)
        else:
            outbox_publishing.mark_published(held, published)
        marked = set(published)
        _count_published([row for row in delivery.acked if row.id in marked])
        if delivery.fatal:
            raise ProducerBroken(f"fatal producer error: {delivery.fatal}")
        if delivery.lost:
            raise NotDelivered(f"{len(delivery.lost)} rows not acknowledged")
        return len(rows)

    def _confirm(self) -> None:
        """LockLost if this relay no longer leads (``LeaderLock.confirm``)."""
        if self._lock is not None:
            self._lock.confirm()

    def _hold_back(self, connection: Connection, row: PendingRow, error: str) -> None:
        attempts = row.attempts + 1
        park = attempts >= self._policy.max_attempts
        delay = self._policy.hold_back(attempts)
        logger.error(
            "outbox row %s (%s for %s) failed attempt %d%s: %s",
            row.id,
            row.event_type,
            row.key,
            attempts,
            "; parked" if park else "",
            error,
        )
        outbox_publishing.record_failure(connection, row, error, delay, park)

    def _observe_backlog(self) -> None:
        if time.monotonic() < self._next_observation:
            return
        self._next_observation = time.monotonic() + 5.0
        backlog = outbox_operations.backlog(self._held.get())
        metrics.OUTBOX_PENDING.set(backlog.pending)
        metrics.OUTBOX_PARKED.set(backlog.parked)
        metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_pending_age_s or 0.0)


def _count_published(rows: list[PendingRow]) -> None:
    now = time.time()
    for topic, count in Counter(row.topic for row in rows).items():
        metrics.EVENTS_PUBLISHED.labels(topic).inc(count)
    created = (row.created_at for row in rows if row.created_at is not None)
    metrics.observe_all(metrics.PUBLISH_DELAY, (max(0.0, now - at.timestamp()) for at in created))


def build(settings: Settings, engine: Engine, stop: threading.Event) -> OutboxRelay:
    """The relay publishing the outbox; ``engine`` is the pool it reads and marks rows with."""
    return OutboxRelay(
        dsn=settings.database_url,
        engine=engine,
        producer_factory=lambda: bootstrap.relay_producer(settings),
        codec=bootstrap.avro_codec(settings),
        stop=stop,
        policy=RelayPolicy.from_settings(settings),
    )
