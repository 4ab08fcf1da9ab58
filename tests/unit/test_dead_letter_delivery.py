"""A dead letter the broker could not take in time is retried, never a reason to exit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from allocation.adapters.faults import is_transient
from allocation.adapters.kafka import Outgoing, produce_and_wait
from allocation.entrypoints.dead_letters import DeadLetters
from allocation.entrypoints.retry import Backoff
from tests.observability import clients_replaced

LETTER = Outgoing("allocation-dlq", b"sku", b"\x00bytes", [("error_type", b"InvalidSku")])


class FakeProducer:
    """Accepts every message; at flush, reports ``outcome`` for each (None: no report at all)."""

    def __init__(self, outcome: KafkaError | None) -> None:
        self._outcome = outcome
        self._callbacks: list[Callable[[KafkaError | None, Any], None]] = []
        self.purged = False

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._callbacks.append(kwargs["on_delivery"])

    def poll(self, timeout: float) -> int:
        return 0

    def purge(self, in_queue: bool, in_flight: bool) -> None:
        assert in_queue
        assert in_flight
        self.purged = True
        self._outcome = KafkaError(KafkaError._PURGE_QUEUE)

    def flush(self, timeout: float) -> int:
        if self._outcome is None:
            return len(self._callbacks)  # still queued: no acknowledgement came
        for callback in self._callbacks:
            callback(self._outcome, None)
        return 0


@pytest.mark.parametrize(
    "report",
    [
        KafkaError(KafkaError._MSG_TIMED_OUT),  # librdkafka's report after message.timeout.ms
        KafkaError(KafkaError._TRANSPORT),
        None,  # flush gave up before any report
    ],
)
def test_a_dead_letter_not_acknowledged_in_time_is_a_transient_failure(
    report: KafkaError | None,
) -> None:
    with pytest.raises(KafkaException) as raised:
        produce_and_wait(FakeProducer(report), [LETTER], timeout=0.01)  # type: ignore[arg-type]
    assert is_transient(raised.value)


def test_what_is_left_unacknowledged_is_purged_so_that_it_never_goes_out_later() -> None:
    producer = FakeProducer(None)
    with pytest.raises(KafkaException, match="no acknowledgement within") as raised:
        produce_and_wait(producer, [LETTER], timeout=0.01)  # type: ignore[arg-type]
    assert producer.purged
    assert is_transient(raised.value)  # the purge's own reports are not the failure


def test_a_refusal_for_good_is_not_transient() -> None:
    with pytest.raises(KafkaException) as raised:
        produce_and_wait(
            FakeProducer(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),  # type: ignore[arg-type]
            [LETTER],
        )
    assert not is_transient(raised.value)


class AckingProducer(FakeProducer):
    """Acknowledges every message at flush."""

    def __init__(self) -> None:
        super().__init__(None)
        self.acked = 0

    def flush(self, timeout: float) -> int:
        for callback in self._callbacks:
            callback(None, None)
            self.acked += 1
        self._callbacks.clear()
        return 0


class Letter:
    def outgoing(self, dlq_topic: str) -> Outgoing:
        return LETTER


def test_a_producer_whose_dead_letters_timed_out_is_replaced_and_counted() -> None:
    made: list[FakeProducer] = []

    def factory() -> FakeProducer:
        timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
        made.append(AckingProducer() if made else FakeProducer(timed_out))
        return made[-1]

    before = clients_replaced("dead_letter_producer", "timed_out")
    letters = DeadLetters(factory, "allocation-dlq", Backoff(threading.Event(), first=0.01))  # type: ignore[arg-type]
    letters.send([Letter()])  # type: ignore[list-item]

    assert len(made) == 2
    assert isinstance(made[1], AckingProducer)
    assert made[1].acked == 1
    assert clients_replaced("dead_letter_producer", "timed_out") == before + 1
