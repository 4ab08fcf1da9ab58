"""A chunk goes to the producer in order; a row that cannot be sent holds back only its key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError

from allocation.adapters.faults import RegistryUnavailable
from allocation.adapters.outbox_publishing import PendingRow
from allocation.entrypoints.relay_sending import ChunkSender, NotDelivered
from tests.observability import clients_replaced

TOPIC = "line-allocated"


class AckingProducer:
    """Keeps what it is handed; a flush acknowledges all of it, or nothing while ``stalled``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []
        self._waiting: list[Callable[[Any, Any], None]] = []
        self.stalled = False
        self.report: KafkaError | None = None  # what each delivery reports (None: an ack)

    def produce(
        self, topic: str, *, key: bytes, value: bytes, headers: Any, on_delivery: Any
    ) -> None:
        self.sent.append((topic, key, dict(headers)))
        self._waiting.append(on_delivery)

    def flush(self, _timeout: float) -> int:
        if self.stalled:
            return len(self._waiting)
        for on_delivery in self._waiting:
            on_delivery(self.report, None)
        self._waiting.clear()
        return 0

    def poll(self, _timeout: float) -> int:
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if topic is None or topic == TOPIC:
            return SimpleNamespace(topics={TOPIC: SimpleNamespace(error=None)})
        missing = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        return SimpleNamespace(topics={topic: SimpleNamespace(error=missing)})


class Codec:
    """Encodes every payload but those marked unencodable; or none, with the registry away."""

    registry_away = False

    def encode_as(self, topic: str, record: dict[str, Any], version: int | None) -> bytes:
        if self.registry_away:
            raise RegistryUnavailable("schema registry: connection refused")
        if record.get("orderid") == "unencodable":
            raise ValueError("field qty: not an int")
        return repr(record).encode()


def row(n: int, key: str, orderid: str = "o", topic: str = TOPIC) -> PendingRow:
    payload = {"orderid": orderid, "sku": key, "qty": 1, "batchref": "b"}
    at = datetime(2026, 11, 29, tzinfo=UTC)
    return PendingRow(n, f"e-{n}", "Allocated", topic, key, payload, at, None, None, 0)


def sender(
    producer: AckingProducer, codec: Codec | None = None, stop: threading.Event | None = None
) -> ChunkSender:
    return ChunkSender(lambda: producer, codec or Codec(), stop or threading.Event())  # type: ignore[arg-type,return-value]


def test_every_row_goes_out_in_order_with_its_event_headers_and_is_acknowledged() -> None:
    producer = AckingProducer()
    rows = [row(1, "LAMP"), row(2, "SOFA"), row(3, "LAMP")]

    delivery = sender(producer).send(rows, confirm=lambda: None)

    assert [r.id for r in delivery.acked] == [1, 2, 3]
    assert [key for _, key, _ in producer.sent] == [b"LAMP", b"SOFA", b"LAMP"]
    assert producer.sent[0][2]["event_id"] == b"e-1"
    assert producer.sent[0][2]["event_type"] == b"Allocated"


def test_a_row_that_does_not_encode_is_refused_and_holds_back_only_its_own_key() -> None:
    producer = AckingProducer()
    rows = [row(1, "LAMP", "unencodable"), row(2, "SOFA"), row(3, "LAMP"), row(4, "SOFA")]

    delivery = sender(producer).send(rows, confirm=lambda: None)

    assert [(r.id, why.split(":")[0]) for r, why in delivery.refused] == [(1, "ValueError")]
    assert [r.id for r in delivery.acked] == [2, 4]  # row 3 was never handed over
    assert delivery.publishable() == [2, 4]


def test_a_row_for_a_topic_that_is_gone_is_refused_alone() -> None:
    delivery = sender(AckingProducer()).send(
        [row(1, "LAMP", topic="no-such-topic"), row(2, "SOFA")], confirm=lambda: None
    )
    assert [(r.id, why) for r, why in delivery.refused] == [
        (1, "LookupError: topic no-such-topic does not exist")
    ]
    assert [r.id for r in delivery.acked] == [2]


def test_a_registry_away_is_no_rows_fault_and_stops_the_chunk() -> None:
    codec = Codec()
    codec.registry_away = True
    with pytest.raises(RegistryUnavailable):
        sender(AckingProducer(), codec).send([row(1, "LAMP")], confirm=lambda: None)


def test_while_acknowledgements_are_awaited_the_leader_confirms_it_leads_and_a_stop_ends_it() -> (
    None
):
    producer = AckingProducer()
    producer.stalled = True
    stop = threading.Event()
    confirmed = []

    def confirm() -> None:
        confirmed.append(True)
        stop.set()

    with pytest.raises(NotDelivered, match="stopping with unacknowledged rows"):
        sender(producer, stop=stop).send([row(1, "LAMP")], confirm)
    assert confirmed == [True]


def test_rows_timed_out_in_the_producer_stay_pending_for_a_new_producer() -> None:
    """librdkafka can leave a producer without a partition's leader for good (its #5430):
    after a timeout the relay never retries on the same producer."""
    made: list[AckingProducer] = []

    def factory() -> AckingProducer:
        made.append(AckingProducer())
        return made[-1]

    chunks = ChunkSender(factory, Codec(), threading.Event())  # type: ignore[arg-type]
    made[0].report = KafkaError(KafkaError._MSG_TIMED_OUT)
    before = clients_replaced("relay_producer", "timed_out")
    delivery = chunks.send([row(1, "LAMP")], confirm=lambda: None)

    assert [r.id for r in delivery.lost] == [1]
    assert chunks.producer is made[1]
    assert clients_replaced("relay_producer", "timed_out") == before + 1
    assert [r.id for r in chunks.send([row(1, "LAMP")], confirm=lambda: None).acked] == [1]


def test_a_transport_error_keeps_the_producer() -> None:
    producer = AckingProducer()
    producer.report = KafkaError(KafkaError._TRANSPORT, retriable=True)
    chunks = sender(producer)
    assert [r.id for r in chunks.send([row(1, "LAMP")], confirm=lambda: None).lost] == [1]
    assert chunks.producer is producer
