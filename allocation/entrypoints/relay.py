"""The outbox relay: publishes committed outbox rows to Kafka, in commit order per key.

One relay leads at a time: the one holding a PostgreSQL advisory lock on its
own connection. Others wait as hot standbys and take over within about
``standby_poll_s`` of the leader's connection closing (its process died).

The leader wakes on NOTIFY (sent by a trigger when outbox rows commit) or
after ``poll_interval_s``. It produces a batch with an idempotent producer,
waits for every acknowledgement, and only then marks the acknowledged rows
published. A crash between the two re-publishes rows with the same event_id.
A row that can never be sent (it does not encode, or the broker refuses it for
good) is retried with growing delays, holding back only its own key, and is
parked for an operator after ``max_attempts``.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg2
import psycopg2.extensions
from confluent_kafka import KafkaError, KafkaException, Producer
from sqlalchemy import Connection, Engine

from allocation.adapters import outbox
from allocation.adapters.avro import AvroCodec, RegistryUnavailable
from allocation.adapters.database import is_unavailable
from allocation.adapters.inbox import prune_inbox
from allocation.adapters.kafka import Headers
from allocation.adapters.security import is_refusal, refused
from allocation.adapters.tables import OUTBOX_CHANNEL
from allocation.adapters.wire import event_from_payload, event_to_record
from allocation.entrypoints.retry import Backoff, Stopped

Delivered = Callable[[outbox.PendingRow, KafkaError | None], None]

logger = logging.getLogger(__name__)

LEADER_LOCK = (0x616C6C6F, 0x72656C61)  # two-int advisory lock key: "allo", "rela"


class NotDelivered(Exception):
    """The broker could not be reached or did not acknowledge some rows; retry after a pause."""


@dataclass
class Delivery:
    """What became of one batch of rows handed to the producer."""

    acked: list[int] = field(default_factory=list)
    refused: list[tuple[outbox.PendingRow, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def record(self, row: outbox.PendingRow, err: KafkaError | None) -> None:
        if err is None:
            self.acked.append(row.id)
        elif is_refusal(err):  # not this row's fault: no row could be sent; stop, park none
            raise refused(err)
        elif err.retriable() or err.code() == KafkaError._MSG_TIMED_OUT:
            self.lost.append(err.str())  # the broker may take it next time
        else:
            self.refused.append((row, f"broker refused: {err.str()}"))


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        engine: Engine,
        producer: Producer,
        codec: AvroCodec,
        stop: threading.Event,
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
        standby_poll_s: float = 1.0,
        max_attempts: int = 10,
        hold_back_base_s: float = 2.0,
        retention: timedelta = timedelta(days=7),
        inbox_retention: timedelta = timedelta(days=7),
        prune_every_s: float = 60.0,
    ) -> None:
        self._dsn = dsn
        self._engine = engine
        self._producer = producer
        self._codec = codec
        self._stop = stop
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._standby_poll_s = standby_poll_s
        self._max_attempts = max_attempts
        self._hold_back_base_s = hold_back_base_s
        self._retention = retention
        self._inbox_retention = inbox_retention
        self._prune_every_s = prune_every_s
        self._next_prune = 0.0
        self._known_topics: set[str] = set()
        self._backoff = Backoff(stop)
        self.is_leader = threading.Event()
        self.published = 0

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self._backoff.call("relay", self._lead_once, _transient)
        except Stopped:
            pass
        finally:
            self._producer.flush(10)

    def _lead_once(self) -> None:
        """Wait for the leader lock, then publish until stopped or the lock's connection fails."""
        leader = psycopg2.connect(self._dsn, application_name="allocation-relay")
        leader.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        try:
            if not self._acquire(leader):
                return
            logger.info("relay is the leader")
            self.is_leader.set()
            with leader.cursor() as cursor:
                cursor.execute(f"LISTEN {OUTBOX_CHANNEL}")
            while not self._stop.is_set():
                if self._publish_batch() < self._batch_size:
                    self._housekeeping()
                    self._wait_for_notify(leader)
        finally:
            self.is_leader.clear()
            leader.close()

    def _acquire(self, leader: psycopg2.extensions.connection) -> bool:
        while not self._stop.is_set():
            with leader.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", LEADER_LOCK)
                row = cursor.fetchone()
            if row is not None and row[0]:
                return True
            self._stop.wait(self._standby_poll_s)
        return False

    def _wait_for_notify(self, leader: psycopg2.extensions.connection) -> None:
        # poll() on a dead connection raises, which sends the relay back to standby.
        readable, _, _ = select.select([leader], [], [], self._poll_interval_s)
        leader.poll()
        leader.notifies.clear()
        if not readable:
            with leader.cursor() as cursor:
                cursor.execute("SELECT 1")

    def _publish_batch(self) -> int:
        with self._engine.connect() as connection:
            rows = outbox.fetch_pending(connection, self._batch_size)
        if not rows:
            return 0
        delivery = self._produce(rows)
        with self._engine.begin() as connection:
            outbox.mark_published(connection, delivery.acked)
            for row, error in delivery.refused:
                self._hold_back(connection, row, error)
        self.published += len(delivery.acked)
        if delivery.lost:
            raise NotDelivered(f"{len(delivery.lost)} rows not acknowledged: {delivery.lost[0]}")
        return len(rows)

    def _produce(self, rows: list[outbox.PendingRow]) -> Delivery:
        delivery = Delivery()
        blocked: set[str] = set()
        topics = self._topics({row.topic for row in rows})
        for row in rows:
            if row.key in blocked:
                continue
            try:
                if row.topic not in topics:
                    raise LookupError(f"topic {row.topic} does not exist")
                value = self._codec.encode(
                    row.topic, event_to_record(event_from_payload(row.event_type, row.payload))
                )
                self._produce_one(row, value, delivery.record)
            except RegistryUnavailable:
                raise
            except Exception as exc:  # this row cannot be sent; later rows of its key wait
                delivery.refused.append((row, f"{type(exc).__name__}: {exc}"))
                blocked.add(row.key)
        self._await_acks()
        return delivery

    def _topics(self, wanted: set[str]) -> set[str]:
        """Which of the topics exist; asking the broker is also how an outage shows up early."""
        if wanted <= self._known_topics:
            return self._known_topics
        self._producer.poll(0)  # serves error_cb, which raises AccessDenied on failed login
        try:
            metadata = self._producer.list_topics(timeout=10)
            # Topics we may not describe are left out of a full listing: ask for them by name.
            for name in wanted - set(metadata.topics):
                error = self._producer.list_topics(name, timeout=10).topics[name].error
                if error is not None and is_refusal(error):
                    raise refused(error)
        except KafkaException as exc:
            raise NotDelivered(f"broker metadata unavailable: {exc}") from exc
        self._known_topics = {name for name, t in metadata.topics.items() if t.error is None}
        return self._known_topics

    def _produce_one(self, row: outbox.PendingRow, value: bytes, delivered: Delivered) -> None:
        headers: Headers = [
            ("event_id", str(row.event_id).encode()),
            ("event_type", row.event_type.encode()),
            ("occurred_at", row.occurred_at.isoformat().encode()),
        ]
        if row.causation_id:
            headers.append(("causation_id", row.causation_id.encode()))
        if row.correlation_id:
            headers.append(("correlation_id", row.correlation_id.encode()))
        while True:
            try:
                self._producer.produce(
                    row.topic,
                    key=row.key.encode(),
                    value=value,
                    headers=headers,
                    on_delivery=lambda err, _msg: delivered(row, err),
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)

    def _await_acks(self) -> None:
        # A broker outage is waited out here, up to the producer's message timeout.
        while self._producer.flush(1.0) > 0:
            if self._stop.is_set():
                raise NotDelivered("stopping with unacknowledged rows; they will be re-published")

    def _hold_back(self, connection: Connection, row: outbox.PendingRow, error: str) -> None:
        attempts = row.attempts + 1
        park = attempts >= self._max_attempts
        delay = timedelta(seconds=min(300.0, self._hold_back_base_s * 2 ** (attempts - 1)))
        logger.error(
            "outbox row %s (%s for %s) failed attempt %d%s: %s",
            row.id,
            row.event_type,
            row.key,
            attempts,
            "; parked" if park else "",
            error,
        )
        outbox.record_failure(connection, row, error, delay, park)

    def _housekeeping(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self._prune_every_s
        with self._engine.begin() as connection:
            pruned = outbox.prune_published(connection, self._retention)
            forgotten = prune_inbox(connection, self._inbox_retention)
        if pruned or forgotten:
            logger.info("pruned %d published outbox rows, %d inbox rows", pruned, forgotten)


def _transient(exc: Exception) -> bool:
    if isinstance(exc, NotDelivered | RegistryUnavailable):
        return True
    if isinstance(exc, KafkaException):
        return bool(exc.args and exc.args[0].retriable())
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) or is_unavailable(
        exc
    )
