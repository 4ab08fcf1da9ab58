"""The consumer's dead letters: produced, acknowledged, and retried until they are.

A letter the broker cannot take is retried with backoff, never a reason to exit: its
offset is not committed until it is acknowledged, so nothing is lost meanwhile. A wait
that gave up purged what it left queued (``produce_and_wait``), so a retry's copy is the
only one written once the broker is back; a letter that reached the broker without its
acknowledgement reaching us is sent again: dead letters are at least once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from allocation.adapters import metrics
from allocation.adapters.faults import is_transient
from allocation.adapters.kafka import produce_and_wait
from allocation.entrypoints.inbound import DeadLetter
from allocation.entrypoints.retry import Backoff

logger = logging.getLogger(__name__)


class DeadLetters:
    """Sends a poll's dead letters to the DLQ topic and waits until all are acknowledged."""

    def __init__(
        self,
        producer_factory: Callable[[], Producer],
        topic: str,
        backoff: Backoff,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self._producer_factory = producer_factory
        self._producer = producer_factory()
        self._topic = topic
        self._backoff = backoff
        self._ack_timeout_s = ack_timeout_s

    def send(self, dead: list[DeadLetter]) -> None:
        if dead:
            self._backoff.call("dead-letter", lambda: self._send_once(dead), _waited_out)

    def flush(self, timeout: float) -> None:
        self._producer.flush(timeout)

    def _send_once(self, dead: list[DeadLetter]) -> None:
        try:
            produce_and_wait(
                self._producer,
                [letter.outgoing(self._topic) for letter in dead],
                self._ack_timeout_s,
            )
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._MSG_TIMED_OUT:
                # The next try gets a new producer: librdkafka can keep one on no
                # partition leader for good once the leader was lost and came back (#5430).
                logger.warning("dead letters not acknowledged in time; new DLQ producer")
                self._producer = self._producer_factory()
                metrics.KAFKA_CLIENTS_REPLACED.labels("dead_letter_producer", "timed_out").inc()
            raise


def _waited_out(exc: Exception) -> bool:
    # Any refusal by the broker of a dead letter is waited out, never a reason to exit.
    return is_transient(exc) or isinstance(exc, KafkaException)
