"""Commands in, events out: a sender of Avro commands and a recorder of topics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from allocation.adapters import contract
from allocation.adapters.avro import AvroCodec
from allocation.adapters.security import kafka_client_security
from allocation.adapters.topic_reader import Received, TopicReader
from allocation.config import Settings

Header = tuple[str, str | bytes | None]

logger = logging.getLogger(__name__)


class CommandSender:
    """Produces commands as Avro in the Confluent wire format, keyed as the contract says."""

    def __init__(self, settings: Settings, codec: AvroCodec, max_bytes: int = 1_000_000) -> None:
        self._codec = codec
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "enable.idempotence": True,
            "message.max.bytes": max_bytes,
        }
        self._producer = Producer(self._config)
        self._earlier: list[Producer] = []  # replaced producers, with what they had in flight
        self._count = 0
        self._purged: list[tuple[int, Message]] = []
        self.last_ack = time.monotonic()

    def send(
        self, topic: str, record: Mapping[str, Any], key: str, headers: Iterable[Header] = ()
    ) -> None:
        self.send_raw(topic, self._codec.encode(topic, record), key, headers)

    def send_raw(
        self, topic: str, value: bytes | None, key: str, headers: Iterable[Header] = ()
    ) -> None:
        self._count += 1
        self._produce(self._count, topic, key.encode(), value, list(headers))

    def _produce(
        self, n: int, topic: str, key: bytes | None, value: bytes | None, headers: Any
    ) -> None:
        on_delivery = partial(self._delivered, n)
        while True:
            try:
                self._producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                self._producer.poll(0.1)

    def _delivered(self, n: int, err: KafkaError | None, message: Message) -> None:
        if err is None:
            self.last_ack = time.monotonic()
        elif err.code() == KafkaError._PURGE_QUEUE:
            self._purged.append((n, message))

    def flush(self) -> None:
        assert self.unacknowledged(60) == 0, "the broker did not acknowledge every command"

    def unacknowledged(self, wait: float = 0) -> int:
        """Commands sent that the broker has not acknowledged, after waiting up to ``wait`` s
        for them (and serving their acknowledgements meanwhile)."""
        earlier = sum(int(producer.flush(0.01)) for producer in self._earlier)
        return earlier + int(self._producer.flush(wait))

    def resend_on_a_new_producer(self) -> int:
        """Take back what the producer still holds unsent and send it on a new one, in order.

        For a producer that stopped sending after its broker came back: librdkafka can keep
        a partition on no leader for good once its leader was lost (its #5430), and the
        chaos suite's broker restarts under load hit that. Only messages never handed to a
        broker are taken back, so none is written twice; what was in flight stays with the
        old producer. Returns how many were sent again.
        """
        self._producer.purge(in_queue=True, in_flight=False)
        self._producer.poll(0)  # serves the purged messages' reports
        purged, self._purged = sorted(self._purged, key=lambda item: item[0]), []
        self._earlier.append(self._producer)
        self._producer = Producer(self._config)
        for n, message in purged:
            headers = message.headers() or []
            self._produce(n, str(message.topic()), message.key(), message.value(), headers)
        return len(purged)

    def create_batch(self, topic: str, ref: str, sku: str, qty: int) -> None:
        """Send a CreateBatch of warehouse stock (no eta) and wait for the broker's ack."""
        self.send(topic, {"ref": ref, "sku": sku, "qty": qty, "eta": None}, sku)
        self.flush()


class Recorder(threading.Thread):
    """Reads topics from the beginning for its whole life, noting when each message arrived.

    A reader still without any partition ``UNASSIGNED_S`` after it started (so it has read
    nothing) is replaced by one in a new group, reading from the beginning (``rebuilt``
    counts them): once in a full chaos run a recorder never joined its group, and the
    scenario failed for want of it while the service had published everything.
    """

    UNASSIGNED_S = 20.0

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self._make = partial(TopicReader, settings, topics, client_id="recorder")
        self._reader = self._make()
        self._seen: list[Received] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.rebuilt = 0

    @property
    def assigned(self) -> threading.Event:
        return self._reader.assigned

    def run(self) -> None:
        since = time.monotonic()
        while not self._halt.is_set():
            received = self._reader.poll(0.05)
            with self._lock:
                self._seen.extend(received)
            if not self._reader.assigned.is_set() and time.monotonic() - since > self.UNASSIGNED_S:
                logger.warning("recorder: no partition in %.0f s; a new group", self.UNASSIGNED_S)
                self._reader.close()
                self._reader, since = self._make(), time.monotonic()
                self.rebuilt += 1
        self._reader.close()

    def seen(self) -> list[Received]:
        with self._lock:
            return list(self._seen)

    def on(self, topic: str) -> list[Received]:
        return [r for r in self.seen() if r.topic == topic]

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.seen()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; "
                    f"{len(self.seen())} messages recorded"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


@dataclass(frozen=True)
class Decoded:
    """A message read back, its value decoded (None when it does not decode)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: dict[str, Any] | None
    raw: bytes | None


class DecodingReader:
    """Reads topics from the beginning, decoding each value as its topic's record
    (a dead letter's as its source topic's)."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        topics: list[str],
        group_prefix: str = "test-reader",
    ) -> None:
        self._codec = codec
        self._reader = TopicReader(settings, topics, client_id=group_prefix)
        self.received: list[Decoded] = []

    def read_until(self, done: Callable[[list[Decoded]], bool], timeout: float) -> list[Decoded]:
        """Read until ``done(everything read so far)``; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not done(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s; received {len(self.received)} records"
                )
            self.received.extend(self._decoded(r) for r in self._reader.poll(0.2))
        return self.received

    def _decoded(self, message: Received) -> Decoded:
        decode_as = message.headers.get(contract.SOURCE_TOPIC, message.topic)
        try:
            value: dict[str, Any] | None = self._codec.decode(decode_as, message.value)
        except Exception:
            value = None
        return Decoded(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.headers,
            value,
            message.value,
        )

    def close(self) -> None:
        self._reader.close()
