"""How the relay hands a chunk of outbox rows to Kafka and waits for every acknowledgement.

Each row goes out with its event headers and a span of its own, encoded with the schema
version it was written for. A row that cannot be sent (it does not encode, its topic is
gone) is refused on its own, and the later rows of its key are not handed over at all,
so a key's events never pass one another. A missing registry is no row's fault: it
stops the chunk, and the whole chunk is tried again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from allocation.adapters import contract, metrics, tracing
from allocation.adapters.avro import AvroCodec
from allocation.adapters.faults import RegistryUnavailable, TransientFault
from allocation.adapters.kafka import Headers
from allocation.adapters.outbox_publishing import PendingRow
from allocation.adapters.security import is_refusal, refused
from allocation.adapters.wire import published_record
from allocation.entrypoints.relay_policy import Delivered, Delivery

logger = logging.getLogger(__name__)


class NotDelivered(TransientFault):
    """The broker could not be reached or did not acknowledge some rows; retry after a pause."""


class ChunkSender:
    """Produces chunks of outbox rows with the relay's idempotent producer."""

    def __init__(
        self, producer_factory: Callable[[], Producer], codec: AvroCodec, stop: threading.Event
    ) -> None:
        self._producer_factory = producer_factory
        self.producer = producer_factory()
        self._codec = codec
        self._stop = stop
        self._known_topics: set[str] = set()

    def renew(self, reason: str) -> None:
        """A new producer, after a fatal error or a timeout (``reason``: fatal or timed_out,
        as counted); rows still unsent stay pending for it."""
        self.producer = self._producer_factory()
        metrics.KAFKA_CLIENTS_REPLACED.labels("relay_producer", reason).inc()

    def send(self, rows: list[PendingRow], confirm: Callable[[], None]) -> Delivery:
        """Hand ``rows`` over in order and wait for every acknowledgement.

        ``confirm`` is called while acknowledgements are awaited: a leader checks there
        that it still leads."""
        delivery = Delivery()
        blocked: set[str] = set()
        topics = self._topics({row.topic for row in rows})
        for row in rows:
            if row.key in blocked:
                continue
            try:
                if row.topic not in topics:
                    raise LookupError(f"topic {row.topic} does not exist")
                value = self._codec.encode_as(row.topic, _record(row), row.schema_version)
                self._produce_one(row, value, delivery.record)
            except RegistryUnavailable:
                raise
            except Exception as exc:  # this row cannot be sent; later rows of its key wait
                delivery.refused.append((row, f"{type(exc).__name__}: {exc}"))
                blocked.add(row.key)
        self._await_acks(confirm)
        if delivery.timed_out:
            # librdkafka can keep a partition on no leader for good once its leader was
            # lost and came back (a broker's controlled shutdown under load, librdkafka
            # #5430); every retry on that producer would time out again. A new producer
            # learns the leaders afresh. Nothing is left queued on this one after a flush.
            logger.warning("rows timed out in the producer; replacing it")
            self.renew("timed_out")
        return delivery

    def _topics(self, wanted: set[str]) -> set[str]:
        """Which of the topics exist; asking the broker is also how an outage shows up early."""
        if wanted <= self._known_topics:
            return self._known_topics
        self.producer.poll(0)  # serves error_cb, which raises AccessDenied on failed login
        try:
            metadata = self.producer.list_topics(timeout=10)
            # Topics we may not describe are left out of a full listing: ask for them by name.
            for name in wanted - set(metadata.topics):
                error = self.producer.list_topics(name, timeout=10).topics[name].error
                if error is not None and is_refusal(error):
                    raise refused(error)
        except KafkaException as exc:
            raise NotDelivered(f"broker metadata unavailable: {exc}") from exc
        self._known_topics = {name for name, t in metadata.topics.items() if t.error is None}
        return self._known_topics

    def _produce_one(self, row: PendingRow, value: bytes, delivered: Delivered) -> None:
        headers: Headers = [
            (contract.EVENT_ID, row.event_id.encode()),
            (contract.EVENT_TYPE, row.event_type.encode()),
            (contract.OCCURRED_AT, row.occurred_at.isoformat().encode()),
        ]
        if row.causation_id:
            headers.append((contract.CAUSATION_ID, row.causation_id.encode()))
        if row.correlation_id:
            headers.append((contract.CORRELATION_ID, row.correlation_id.encode()))
        span = tracing.start_send(row.topic, row.key, row.traceparent)
        traceparent = tracing.traceparent_of(span)
        if traceparent:
            headers.append((contract.TRACEPARENT, traceparent.encode()))

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            span.end()
            delivered(row, err)

        while True:
            try:
                self.producer.produce(
                    row.topic,
                    key=row.key.encode(),
                    value=value,
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)

    def _await_acks(self, confirm: Callable[[], None]) -> None:
        # A broker outage is waited out here, up to the producer's message timeout.
        while self.producer.flush(1.0) > 0:
            if self._stop.is_set():
                raise NotDelivered("stopping with unacknowledged rows; they will be re-published")
            confirm()


def _record(row: PendingRow) -> dict[str, object]:
    return published_record(row.payload, row.event_id, row.occurred_at, row.causation_id)
