"""Kafka clients configured the way the contract needs them, topics, headers, producing.

Every Kafka client of the service and its tools is configured here.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from allocation.adapters import contract
from allocation.adapters.logs import LIBRDKAFKA
from allocation.adapters.security import kafka_client_security
from allocation.config import Settings

Headers = list[tuple[str, str | bytes | None]]

# The dead-letter topic takes records up to this size, so that any record a
# command topic accepted can be dead-lettered whole.
DLQ_MAX_BYTES = 16 * 1024 * 1024


def producer_config(settings: Settings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer's configuration: acks from every in-sync replica, in order."""
    # librdkafka leaves idempotence off unless asked; with it, acks=all and
    # ordered retries come along, so a resend never duplicates or reorders.
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        "logger": LIBRDKAFKA,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        **kafka_client_security(settings),
        **overrides,
    }


def consumer_config(
    settings: Settings, group: str, client_id: str, **overrides: Any
) -> dict[str, Any]:
    """A consumer whose offsets move only when the application says its work is durable."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group,
        "client.id": client_id,
        "logger": LIBRDKAFKA,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        **kafka_client_security(settings),
        **overrides,
    }


def command_consumer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """The command consumer's group membership, static when an instance id is set.

    With the broker-driven protocol of KIP-848 (``consumer``, the default) the broker
    assigns partitions incrementally and decides the session timeout
    (``group.consumer.session.timeout.ms``, 10 s in the stack); with ``classic`` the
    client asks for cooperative-sticky assignment and its own session timeout.
    """
    if settings.consumer_group_protocol == "consumer":
        group: dict[str, Any] = {"group.protocol": "consumer"}
    else:
        group = {
            "group.protocol": "classic",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": settings.consumer_session_timeout_ms,
        }
    config = consumer_config(settings, settings.consumer_group, client_id, **group)
    if settings.consumer_instance_id:
        config["group.instance.id"] = settings.consumer_instance_id
    return config


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    """A client for topic and group administration."""
    return AdminClient(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            **overrides,
        }
    )


def create_topics(
    settings: Settings,
    topics: Iterable[str],
    partitions: int,
    configs: Mapping[str, dict[str, str]] | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create the topics that are missing; returns ``{topic: "created" | "exists"}``."""
    admin = admin_client(settings)
    wanted = [
        NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=settings.topic_replication_factor,
            config=(configs or {}).get(topic, {}),
        )
        for topic in topics
    ]
    outcome: dict[str, str] = {}
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            outcome[topic] = "created"
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            outcome[topic] = "exists"
    return outcome


MessageHeaders = list[tuple[str, bytes]]


def message_headers(message: Message) -> MessageHeaders:
    """A message's headers as (name, bytes) pairs; headers without a value are left out.

    Call it ONCE per message and pass the result on. confluent-kafka raises (a
    SystemError over a UnicodeDecodeError) converting a header name that is not
    UTF-8, keeps the half-built list, and a second ``headers()`` call on that
    message crashes the process. Such a message is taken as having no headers,
    so a header can never stop a consumer.
    """
    try:
        raw = message.headers() or []
    except (SystemError, UnicodeError):
        return []
    try:
        if isinstance(raw, list) and not _whole(raw):
            return []
    except SystemError:  # the decode error confluent-kafka left pending surfaced here
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs if v is not None]


def _whole(headers: list[Any]) -> bool:
    """Whether confluent-kafka filled every slot of the list (and of each pair) it returned.

    On a header name that is not UTF-8 it may return, without raising, a list whose
    slots past that header are NULL, with the decode error left pending (the next C
    call then raises SystemError); touching such a slot from Python crashes the
    process. The garbage collector's traversal skips NULL slots, so counting what it
    sees against the length tells, without touching any slot.
    """
    pairs = gc.get_referents(headers)
    return len(pairs) == len(headers) and all(
        isinstance(pair, tuple) and len(gc.get_referents(pair)) == len(pair) for pair in pairs
    )


def header(headers: MessageHeaders, name: str) -> str | None:
    """The first header called ``name``, as text; None when absent or not UTF-8."""
    for key, value in headers:
        if key == name:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


def message_identity(message: Message, headers: MessageHeaders) -> str:
    """The inbox key of an inbound message (the README's "Inbox identity").

    ``id:<topic>:<message_id>`` when the sender set a ``message_id`` header: one id
    reused on two command topics names two commands. Else
    ``at:<topic>:<partition>:<offset>:<timestamp ms>``: the record's timestamp
    tells a recreated topic's offset 5 from the old topic's offset 5.
    """
    message_id = _message_id(headers)
    if message_id is not None:
        return f"id:{message.topic()}:{message_id}"
    _, timestamp = message.timestamp()
    return f"at:{message.topic()}:{message.partition()}:{message.offset()}:{timestamp}"


def legacy_identity(message: Message, headers: MessageHeaders) -> str:
    """The key the same message had under the rule before 0.12 (``id:<message_id>``, else
    ``<topic>:<partition>:<offset>``): found in the inbox, the message was applied by an
    older consumer during a rolling upgrade. Rows of that rule expire with the inbox's
    retention; after that, checking it finds nothing and it can go."""
    message_id = _message_id(headers)
    if message_id is not None:
        return "id:" + message_id
    return f"{message.topic()}:{message.partition()}:{message.offset()}"


def _message_id(headers: MessageHeaders) -> str | None:
    message_id = header(headers, contract.MESSAGE_ID)
    # An id the inbox cannot store (unprintable, or longer than its key) is ignored.
    if message_id and len(message_id) <= 200 and message_id.isprintable():
        return message_id
    return None


def dead_letter_headers(
    message: Message, headers: MessageHeaders, error_type: str, error_message: str
) -> Headers:
    """The original headers, then the contract's DLQ headers saying what failed and where."""
    reason = error_message if len(error_message) <= 2000 else error_message[:1997] + "..."
    return [
        *headers,
        (contract.ERROR_TYPE, error_type.encode()),
        (contract.ERROR_MESSAGE, reason.encode("utf-8", "replace")),
        (contract.SOURCE_TOPIC, str(message.topic()).encode()),
        (contract.SOURCE_PARTITION, str(message.partition()).encode()),
        (contract.SOURCE_OFFSET, str(message.offset()).encode()),
        (contract.FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]


@dataclass(frozen=True)
class Outgoing:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def produce_and_wait(
    producer: Producer, messages: Iterable[Outgoing], timeout: float = 30.0
) -> list[Message]:
    """Produce the messages and wait until the broker acknowledged every one.

    Raises KafkaException with the first refusal, or when an acknowledgement did
    not come within ``timeout`` seconds: what was still unacknowledged then is purged
    from the producer, so that nothing of this call goes out after it returned. The
    acknowledged messages are returned in the order given (acknowledgements of several
    partitions come in any order).
    """
    delivered: dict[int, Message] = {}
    failures: list[KafkaError] = []

    def on_delivery(index: int, err: KafkaError | None, message: Message) -> None:
        if err is not None:
            failures.append(err)
        else:
            delivered[index] = message

    count = 0
    for m in messages:
        count += 1
        while True:
            try:
                producer.produce(
                    m.topic,
                    key=m.key,
                    value=m.value,
                    headers=m.headers,
                    on_delivery=partial(on_delivery, count - 1),
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
    left = producer.flush(timeout)
    refusals = list(failures)
    if left > 0:
        # Given up: what is still queued must not go out later, once the broker is back,
        # beside the copy the caller's retry sends. A message already in flight may have
        # been written; only the retry can tell, so the caller's delivery is at least once.
        producer.purge(in_queue=True, in_flight=True)
        producer.poll(0)  # serves the purged messages' reports
    if refusals:
        raise KafkaException(refusals[0])
    if left > 0 or len(delivered) < count:
        # Retriable: the broker may be back a moment later (faults.classify agrees).
        raise KafkaException(
            KafkaError(
                KafkaError._MSG_TIMED_OUT,
                f"no acknowledgement within {timeout:.0f} s",
                retriable=True,
            )
        )
    return [delivered[index] for index in range(count)]
