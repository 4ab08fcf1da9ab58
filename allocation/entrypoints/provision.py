"""Setting up the contract on the servers: its topics and its schemas, idempotently."""

from __future__ import annotations

from collections.abc import Mapping

from allocation.adapters.avro import registry_client
from allocation.adapters.kafka import DLQ_MAX_BYTES, create_topics
from allocation.adapters.schemas import Registered, register_all
from allocation.adapters.wire import load_schema, topic_records
from allocation.config import Settings


def create_contract_topics(
    settings: Settings,
    partitions: int | None = None,
    configs: Mapping[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    """Create every topic of the contract that is missing; ``{topic: "created" | "exists"}``.

    The dead-letter topic keeps letters ``dlq_retention_days`` and takes records up to
    DLQ_MAX_BYTES, so that whatever a command topic accepted can be dead-lettered whole.
    """
    dead_letters = {
        "retention.ms": str(int(settings.dlq_retention_days * 86_400_000)),
        "max.message.bytes": str(DLQ_MAX_BYTES),
    }
    chosen = {settings.topic_dlq: dead_letters}
    for topic, config in (configs or {}).items():
        chosen[topic] = {**chosen.get(topic, {}), **config}
    count = partitions or settings.topic_partitions
    return create_topics(settings, settings.all_topics, count, configs=chosen)


def register_contract_schemas(settings: Settings) -> list[Registered]:
    """Register each topic's schema under ``<topic>-value`` with BACKWARD compatibility."""
    schemas = {topic: load_schema(name) for topic, name in topic_records(settings).items()}
    return register_all(registry_client(settings), schemas)
