"""Kafka clients configured the way the contract needs them, topics, and dead letters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from allocation.adapters.security import kafka_client_security
from allocation.config import Settings

Headers = list[tuple[str, str | bytes | None]]

# The dead-letter topic takes records up to this size, so that any record a
# command topic accepted can be dead-lettered whole.
DLQ_MAX_BYTES = 16 * 1024 * 1024


def producer_config(settings: Settings, client_id: str, **overrides: Any) -> dict[str, Any]:
    # librdkafka leaves idempotence off unless asked; with it, acks=all and
    # ordered retries come along, so a resend never duplicates or reorders.
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
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
    # Offsets are committed by hand, only after the work they cover is durable.
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        **kafka_client_security(settings),
        **overrides,
    }


def command_consumer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """The command consumer's group membership, static when an instance id is set."""
    config = consumer_config(
        settings,
        settings.consumer_group,
        client_id,
        **{"session.timeout.ms": settings.consumer_session_timeout_ms},
    )
    if settings.consumer_instance_id:
        config["group.instance.id"] = settings.consumer_instance_id
    return config


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **kafka_client_security(settings)}
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


def message_headers(message: Message) -> list[tuple[str, bytes]]:
    """A message's headers as (name, bytes) pairs; headers without a value are left out."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs if v is not None]


def header(message: Message, name: str) -> str | None:
    for key, value in message_headers(message):
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def message_identity(message: Message) -> str:
    """The inbox key of an inbound message: its ``message_id`` header, else its coordinates."""
    message_id = header(message, "message_id")
    # An id the inbox cannot store (unprintable, or longer than its key) is ignored.
    if message_id and len(message_id) <= 200 and message_id.isprintable():
        return "id:" + message_id
    return f"{message.topic()}:{message.partition()}:{message.offset()}"


def dead_letter_headers(message: Message, error_type: str, error_message: str) -> Headers:
    """The original headers, then the contract's DLQ headers saying what failed and where."""
    reason = error_message if len(error_message) <= 2000 else error_message[:1997] + "..."
    return [
        *message_headers(message),
        ("error_type", error_type.encode()),
        ("error_message", reason.encode("utf-8", "replace")),
        ("source_topic", str(message.topic()).encode()),
        ("source_partition", str(message.partition()).encode()),
        ("source_offset", str(message.offset()).encode()),
        ("failed_at", datetime.now(UTC).isoformat().encode()),
    ]
