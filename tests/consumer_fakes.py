"""Fakes of Kafka, the codec and the message bus around a real ``CommandConsumer``, shared by
the unit tests of its decisions (failures, offsets)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2
from confluent_kafka import KafkaError, Message, TopicPartition
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc

from allocation.domain import commands
from allocation.entrypoints.consumer import CommandConsumer
from allocation.service_layer.messagebus import Outcome
from allocation.service_layer.ports import ConsumedOffset
from allocation.service_layer.unit_of_work import Envelope

TOPIC = "allocate"


def database_error(code: str, message: str) -> sa_exc.DBAPIError:
    original = pg_errors.lookup(code)(message)
    statement = "INSERT INTO allocations_view VALUES (%(orderid)s)"
    return sa_exc.DBAPIError.instance(statement, {"orderid": "o-secret"}, original, psycopg2.Error)


class FakeKafkaConsumer:
    def __init__(self) -> None:
        self.committed: list[TopicPartition] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.committed.extend(offsets)

    def close(self) -> None:
        pass


class FakeProducer:
    """Acknowledges every dead letter, after failing the first ``outages`` flushes."""

    def __init__(self, outages: int = 0) -> None:
        self.outages = outages
        self.sent: list[dict[str, Any]] = []
        self._pending: list[tuple[dict[str, Any], Callable[..., None]]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._pending.append(({"topic": topic, **kwargs}, kwargs["on_delivery"]))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        pending, self._pending = self._pending, []
        for sent, on_delivery in pending:
            if self.outages:
                on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            else:
                self.sent.append(sent)
                on_delivery(None, None)
        self.outages = max(0, self.outages - 1)
        return 0

    def letters(self) -> dict[str, dict[str, bytes]]:
        """Each letter's headers, by the order id in its value."""
        return {json.loads(s["value"])["orderid"]: dict(s["headers"]) for s in self.sent}


class FakeCodec:
    def decode(self, topic: str, value: bytes | None) -> dict[str, Any]:
        return dict(json.loads(value or b"null"))


class FakeBus:
    """Applies every command unless ``fail(command)`` returns an error to raise."""

    def __init__(self, fail: Callable[[commands.Allocate], Exception | None]) -> None:
        self.fail = fail
        self.applied: list[str] = []
        # What each committed transaction held: order ids applied, offsets saved.
        self.transactions: list[tuple[list[str], list[ConsumedOffset]]] = []

    def handle_many(
        self,
        items: Sequence[tuple[commands.Command, Envelope | None]],
        offsets: Sequence[ConsumedOffset] = (),
    ) -> list[Outcome]:
        for command, _ in items:
            assert isinstance(command, commands.Allocate)
            if (error := self.fail(command)) is not None:
                raise error
        orderids = [c.orderid for c, _ in items if isinstance(c, commands.Allocate)]
        self.applied.extend(orderids)
        self.transactions.append((orderids, list(offsets)))
        return [Outcome() for _ in items]

    def save_offsets(self, offsets: Sequence[ConsumedOffset]) -> None:
        self.transactions.append(([], list(offsets)))

    def handle(self, command: commands.Command, envelope: Envelope | None = None) -> Outcome:
        return self.handle_many([(command, envelope)])[0]


def consumer(
    bus: FakeBus,
    dlq: FakeProducer | Callable[[], FakeProducer],
    attempts: int = 1,
    stop: threading.Event | None = None,
) -> CommandConsumer:
    """A consumer dead-lettering to ``dlq``, or to each producer ``dlq`` makes in turn."""
    return CommandConsumer(
        consumer_factory=FakeKafkaConsumer,  # type: ignore[arg-type]
        dlq_factory=dlq if callable(dlq) else lambda: dlq,  # type: ignore[arg-type,return-value]
        dlq_topic="allocation-dlq",
        codec=FakeCodec(),  # type: ignore[arg-type]
        bus=bus,  # type: ignore[arg-type]
        records={TOPIC: "Allocate"},
        stop=stop or threading.Event(),
        group="allocation",
        stored_offsets=lambda _: {},
        unexpected_attempts=attempts,
    )


def message(orderid: str, offset: int, sku: str = "LAMP") -> Message:
    value = json.dumps({"orderid": orderid, "sku": sku, "qty": 1}).encode()
    return Message(
        topic=TOPIC, partition=0, offset=offset, key=sku.encode(), value=value, headers=[]
    )


def poll(*orderids: str) -> list[Message]:
    return [message(orderid, offset) for offset, orderid in enumerate(orderids)]
