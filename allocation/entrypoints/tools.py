"""Console tooling: produce a command, watch a topic, inspect and replay dead letters."""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from allocation.adapters.avro import AvroCodec, PoisonMessage
from allocation.adapters.kafka import (
    Headers,
    consumer_config,
    message_headers,
    producer_config,
)
from allocation.adapters.security import is_refusal
from allocation.adapters.wire import COMMAND_DECODERS, Record, check_command, topic_records
from allocation.config import Settings

DLQ_HEADERS = frozenset(
    {
        "error_type",
        "error_message",
        "source_topic",
        "source_partition",
        "source_offset",
        "failed_at",
    }
)


class ToolError(Exception):
    """A user-facing failure of a console tool; its text is the whole message."""


@dataclass(frozen=True)
class Produced:
    topic: str
    partition: int
    offset: int
    key: str
    message_id: str


def produce_command(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    record: Record,
    key: str | None = None,
    correlation_id: str | None = None,
    check: bool = True,
) -> Produced:
    """Encode ``record`` with the topic's schema and produce it, keyed as the contract says."""
    record_name = topic_records(settings).get(topic)
    if record_name not in COMMAND_DECODERS:
        raise ToolError(f"{topic} is not a command topic; use one of {settings.command_topics}")
    if check:
        check_command(COMMAND_DECODERS[record_name](record))
    key = key or str(record["batchref" if record_name == "ChangeBatchQuantity" else "sku"])
    message_id = str(uuid.uuid4())
    headers: Headers = [("message_id", message_id.encode())]
    if correlation_id:
        headers.append(("correlation_id", correlation_id.encode()))
    producer = Producer(producer_config(settings, "allocation-cli"))
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, message: Message) -> None:
        (errors.append(err) if err is not None else delivered.append(message))

    producer.produce(
        topic,
        key=key.encode(),
        value=codec.encode(topic, record),
        headers=headers,
        on_delivery=on_delivery,
    )
    if producer.flush(30) > 0 or errors or not delivered:
        reason = errors[0].str() if errors else "no acknowledgement within 30 s"
        raise ToolError(f"could not produce to {topic}: {reason}")
    message = delivered[0]
    return Produced(topic, message.partition() or 0, message.offset() or 0, key, message_id)


def read(
    settings: Settings,
    topics: list[str],
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    group: str | None = None,
) -> Iterator[Message]:
    """Yield records from the topics until ``max_messages`` or ``idle_timeout`` s of silence."""
    group = group or f"allocation-cli-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        consumer_config(
            settings,
            group,
            "allocation-cli",
            **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
        )
    )
    # Silence is counted from the last record, or from the first assignment before any.
    last_activity: list[float] = []

    def assigned(*_: object) -> None:
        if not last_activity:
            last_activity.append(time.monotonic())

    consumer.subscribe(topics, on_assign=assigned)
    seen = 0
    try:
        while max_messages is None or seen < max_messages:
            message = consumer.poll(0.5)
            if message is None:
                silent = last_activity and time.monotonic() - last_activity[-1]
                if idle_timeout is not None and silent and silent > idle_timeout:
                    return
                continue
            error = message.error()
            if error is not None:
                if error.fatal() or is_refusal(error):  # no ACL to read: waiting will not help
                    raise KafkaException(error)
                continue
            seen += 1
            last_activity[:] = [time.monotonic()]
            yield message
    finally:
        consumer.close()


def describe(codec: AvroCodec, message: Message, decode_as: str | None = None) -> dict[str, Any]:
    """A message as a JSON-ready dict: coordinates, key, headers and the decoded value."""
    headers = {name: value.decode("utf-8", "replace") for name, value in message_headers(message)}
    key = message.key()
    described: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": message.timestamp()[1],
        "key": key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
        "headers": headers,
    }
    raw = message.value()
    try:
        described["value"] = codec.decode(decode_as or str(message.topic()), raw)
    except (PoisonMessage, KeyError) as exc:
        described["value"] = None
        described["undecodable"] = str(exc)
        described["value_base64"] = base64.b64encode(raw or b"").decode()
    return described


def print_json(row: dict[str, Any], out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(row, default=_jsonable, sort_keys=False) + "\n")
    out.flush()


def _jsonable(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def replay_dead_letters(
    settings: Settings,
    select: Callable[[Message], bool],
    idle_timeout: float,
) -> list[dict[str, Any]]:
    """Send the chosen dead letters back to their source topics, as they first arrived.

    A letter that had no ``message_id`` gets one derived from its DLQ position,
    so replaying the same letter twice applies it at most once.
    """
    producer = Producer(producer_config(settings, "allocation-cli"))
    replayed: list[dict[str, Any]] = []
    messages = read(settings, [settings.topic_dlq], True, None, idle_timeout)
    for letter in messages:
        if not select(letter):
            continue
        headers = dict(message_headers(letter))
        source = headers.get("source_topic", b"").decode()
        if not source:
            continue
        original: Headers = [(k, v) for k, v in message_headers(letter) if k not in DLQ_HEADERS]
        if "message_id" not in headers:
            original.append(("message_id", f"dlq:{letter.partition()}:{letter.offset()}".encode()))
        producer.produce(source, key=letter.key(), value=letter.value(), headers=original)
        replayed.append(
            {"dlq_partition": letter.partition(), "dlq_offset": letter.offset(), "to": source}
        )
    if producer.flush(30) > 0:
        raise ToolError("some dead letters were not acknowledged by the broker; nothing is lost")
    return replayed
