"""Reading topics as the tools, tests and benchmark do: messages as plain ``Received`` values."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from allocation.adapters.kafka import consumer_config, message_headers
from allocation.adapters.security import is_refusal
from allocation.config import Settings


@dataclass(frozen=True)
class Received:
    """A message as read from a topic, with the monotonic time it was read."""

    at: float
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    headers: dict[str, str]
    value: bytes | None


class TopicReader:
    """Reads topics with a group of its own, from the beginning or from now on.

    The one reader behind ``allocation consume``, the DLQ tools, the tests and
    the benchmark. It never commits: a throwaway group leaves no trace.
    """

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        from_beginning: bool = True,
        group: str | None = None,
        client_id: str = "allocation-reader",
    ) -> None:
        group = group or f"{client_id}-{uuid.uuid4().hex[:8]}"
        offset_reset = "earliest" if from_beginning else "latest"
        overrides = {
            "auto.offset.reset": offset_reset,
            "fetch.wait.max.ms": 50,
            # A topic deleted and created again while it is read (a DLQ, say) is found
            # within seconds, not at librdkafka's default five-minute metadata refresh.
            "topic.metadata.refresh.interval.ms": 5000,
        }
        self._consumer = Consumer(consumer_config(settings, group, client_id, **overrides))
        self.assigned = threading.Event()
        self._consumer.subscribe(topics, on_assign=lambda *_: self.assigned.set())

    def poll(self, timeout: float) -> list[Received]:
        """What has arrived, up to 1,000 messages; waits ``timeout`` s only while nothing has."""
        ready = self._consumer.consume(1000, timeout=0) or self._consumer.consume(1, timeout)
        now = time.monotonic()
        received = []
        for message in ready:
            error = message.error()
            if error is not None:
                if error.fatal() or is_refusal(error):  # no ACL to read: waiting will not help
                    raise KafkaException(error)
                continue
            received.append(_received(message, now))
        return received

    def watermarks(self, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
        """{partition: (first offset kept, next offset to be written)} of ``topic`` now."""
        metadata = self._consumer.list_topics(topic, timeout=timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return {}
        return {
            p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            for p in found.partitions
        }

    def close(self) -> None:
        self._consumer.close()


def _received(message: Message, now: float) -> Received:
    key = message.key()
    return Received(
        at=now,
        topic=str(message.topic()),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp_ms=message.timestamp()[1],
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
        headers={
            name: value.decode("utf-8", "replace") for name, value in message_headers(message)
        },
        value=message.value(),
    )
