"""Smoke tests: each server of the stack is the real one and does its basic job."""

from __future__ import annotations

import json
import uuid

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from sqlalchemy import Engine, text

from allocation.adapters.security import kafka_client_security
from allocation.config import Settings
from bench.environment import run_topics
from testkit.topics import drop_topics


def test_kafka_round_trips_a_message(settings: Settings, admin: AdminClient) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **kafka_client_security(settings)}
    )
    producer.produce(topic, key=b"k", value=b"hello kafka", headers=[("h", b"1")])
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "group.id": topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None
        assert (message.key(), message.value()) == (b"k", b"hello kafka")
        assert message.headers() == [("h", b"1")]
    finally:
        consumer.close()
        drop_topics(admin, [topic])


def test_kafka_is_a_kraft_broker_without_automatic_topic_creation(
    settings: Settings, admin: AdminClient
) -> None:
    metadata = admin.list_topics(timeout=10)
    assert metadata.cluster_id
    assert [broker.port for broker in metadata.brokers.values()] == [
        int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1])
    ]
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "message.timeout.ms": 3000,
        }
    )
    errors: list[object] = []
    missing = f"never-created-{uuid.uuid4().hex[:8]}"
    producer.produce(missing, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert errors
    assert errors[0] is not None
    assert missing not in admin.list_topics(timeout=10).topics


def test_registry_is_apicurio_and_keeps_avro_schemas(
    settings: Settings, registry: SchemaRegistryClient
) -> None:
    subject = f"smoke-{uuid.uuid4().hex[:8]}-value"
    schema = {
        "type": "record",
        "name": "Smoke",
        "namespace": "io.allocation.test",
        "fields": [{"name": "a", "type": "string"}],
    }
    schema_id = registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    fetched = registry.get_schema(schema_id)
    assert json.loads(fetched.schema_str or "{}")["name"] == "Smoke"
    assert registry.get_latest_version(subject).schema_id == schema_id

    base = settings.schema_registry_url.split("/apis/", 1)[0]
    info = httpx.get(f"{base}/apis/registry/v3/system/info", timeout=10).json()
    assert "Apicurio" in info["name"]


def test_postgres_round_trips_a_row(engine: Engine) -> None:
    with engine.begin() as connection:
        assert "PostgreSQL" in connection.execute(text("SELECT version()")).scalar_one()
        connection.execute(text("CREATE TEMP TABLE smoke (id int, note text)"))
        connection.execute(text("INSERT INTO smoke VALUES (1, 'hello postgres')"))
        assert connection.execute(text("SELECT note FROM smoke WHERE id = 1")).scalar_one() == (
            "hello postgres"
        )


def test_the_service_role_is_not_a_superuser(engine: Engine) -> None:
    with engine.connect() as connection:
        superuser = connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
    assert superuser is False


def test_a_bench_runs_topics_are_gone_once_the_run_ends(
    settings: Settings, admin: AdminClient
) -> None:
    with run_topics(settings, partitions=1) as ours:
        assert set(ours.all_topics) <= set(admin.list_topics(timeout=10).topics)
    # Deleted, not merely asked for: a request queued on a client that is dropped at once is
    # never sent, and every run's topics stayed on the broker.
    assert not set(ours.all_topics) & set(admin.list_topics(timeout=10).topics)


def test_dropped_topics_are_listed_by_no_client_once_drop_topics_returns(
    settings: Settings, admin: AdminClient
) -> None:
    # The broker's metadata lags the controller's confirmation: without drop_topics waiting
    # for it, 19 of 30 rounds like these still listed a deleted topic.
    for _ in range(5):
        names = [f"dropped-{uuid.uuid4().hex[:8]}-{n}" for n in range(4)]
        created = admin.create_topics([NewTopic(name, 1, 1) for name in names])
        for future in created.values():
            future.result(30)
        drop_topics(settings, names)
        assert not set(names) & set(admin.list_topics(timeout=10).topics)
