"""Setting up the contract on the servers: its topics and its schemas, idempotently."""

from __future__ import annotations

from collections.abc import Mapping

from allocation.adapters.avro import registry_client
from allocation.adapters.contract import compatibility_levels, topic_schemas
from allocation.adapters.kafka import DLQ_MAX_BYTES, create_topics
from allocation.adapters.schemas import Checked, Registered, check_all, register_all
from allocation.config import Settings


def create_contract_topics(
    settings: Settings,
    partitions: int | None = None,
    configs: Mapping[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    """Create every topic of the contract that is missing; ``{topic: "created" | "exists"}``.

    Every topic is replicated ``topic_replication_factor`` times and accepts a write
    once ``min_insync_replicas`` of them have it, so one broker lost loses no
    acknowledged record and stops no writer. The dead-letter topic keeps letters
    ``dlq_retention_days`` and takes records up to DLQ_MAX_BYTES, so that whatever a
    command topic accepted can be dead-lettered whole.
    """
    replicated = {"min.insync.replicas": str(min_insync_replicas(settings))}
    dead_letters = {
        **replicated,
        "retention.ms": str(int(settings.dlq_retention_days * 86_400_000)),
        "max.message.bytes": str(DLQ_MAX_BYTES),
    }
    chosen = {topic: dict(replicated) for topic in settings.all_topics}
    chosen[settings.topic_dlq] = dead_letters
    for topic, config in (configs or {}).items():
        chosen[topic] = {**chosen.get(topic, {}), **config}
    count = partitions or settings.topic_partitions
    return create_topics(settings, settings.all_topics, count, configs=chosen)


def min_insync_replicas(settings: Settings) -> int:
    """RF - 1, at least 1: a write survives one broker lost, and one broker down stops none."""
    return max(1, settings.topic_replication_factor - 1)


def register_contract_schemas(settings: Settings) -> list[Registered]:
    """Register each topic's schema under ``<topic>-value`` at its direction's compatibility."""
    registry = registry_client(settings)
    return register_all(registry, topic_schemas(settings), compatibility_levels(settings))


def check_contract_schemas(settings: Settings) -> list[Checked]:
    """What registering the working tree's schemas would do; registers nothing."""
    registry = registry_client(settings)
    return check_all(registry, topic_schemas(settings), compatibility_levels(settings))
