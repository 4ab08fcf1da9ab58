"""The operator's faults (a missing table or privilege, an old schema): pause or stop, no DLQ."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from allocation.adapters.database import make_engine
from allocation.adapters.tables import allocations
from allocation.bootstrap import avro_codec, bootstrap, upgrade_schema
from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import (
    Service,
    leading_relay_pid,
    readiness,
    service_env,
    wait_for_batches,
    wait_for_leader,
    wait_until,
    wait_until_ready,
)
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, DecodingReader
from tests.conftest import fresh_database, random_batchref, random_orderid, random_sku


@pytest.fixture
def world(
    settings: Settings, admin: AdminClient, registry: SchemaRegistryClient
) -> Iterator[Settings]:
    """A database and topics of this test's own: what it breaks, nobody else sees."""
    with fresh_database(settings) as fresh:
        ours = fresh.with_prefix(f"sys-{uuid.uuid4().hex[:6]}", topic_partitions=1)
        create_contract_topics(ours)
        register_contract_schemas(ours)
        yield ours
        drop_topics(admin, ours.all_topics)


def dead_letter_count(settings: Settings) -> int:
    reader = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "watermarks"}
    )
    try:
        low, high = reader.get_watermark_offsets(TopicPartition(settings.topic_dlq, 0), 10)
        return int(high - low)
    finally:
        reader.close()


def rollbacks(engine: Engine) -> int:
    """Transactions rolled back in this database; asking (in autocommit) adds none."""
    query = "SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        return int(connection.execute(text(query)).scalar_one())


def test_a_missing_table_pauses_the_consumer_until_it_is_back_and_dead_letters_nothing(
    world: Settings, tmp_path: Path
) -> None:
    upgrade_schema(world)
    # The operator's mistake, made as the owner: the service's role may not rename a table.
    engine = make_engine(world.migration_sqlalchemy_url, pool_size=1)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE products RENAME TO products_x"))
    before = rollbacks(engine)
    consumer = Service(["consumer"], service_env(world), tmp_path, "consumer").start()
    try:
        wait_until_ready(consumer)
        sender = CommandSender(world, avro_codec(world))
        sku, refs = random_sku(), [random_batchref(1), random_batchref(2)]
        for ref in refs:  # one topic, one key: applied in this order
            sender.send(world.topic_add_batch, {"ref": ref, "sku": sku, "qty": 5, "eta": None}, sku)
        sender.flush()
        # Every failed try rolls back: several mean the consumer met the fault and kept
        # trying (the statistics reach pg_stat_database within about 10 s).
        wait_until(lambda: rollbacks(engine) >= before + 4, 90, "the consumer to retry")
        assert consumer.running, consumer.log()[-3000:]
        assert dead_letter_count(world) == 0, consumer.log()[-3000:]

        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE products_x RENAME TO products"))
        wait_for_batches(engine, refs, timeout=60)
        # And it goes on: a command sent after the pause is applied too.
        orderid = random_orderid()
        sender.send(world.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 2}, sku)
        sender.flush()
        query = select(allocations.c.orderid).where(allocations.c.orderid == orderid)

        def allocated() -> bool:
            with engine.connect() as connection:
                return connection.execute(query).first() is not None

        wait_until(allocated, 60, f"{orderid} to be allocated")
        assert dead_letter_count(world) == 0
        assert "consumption paused: SQLSTATE 42P01" in consumer.log()
    finally:
        code = consumer.terminate()
        print(f"--- consumer log ---\n{consumer.log()[-4000:]}")
        engine.dispose()
    assert code == 0


def test_a_revoked_permission_pauses_the_relay_which_keeps_its_lock_and_resumes_by_itself(
    world: Settings, tmp_path: Path
) -> None:
    upgrade_schema(world)
    engine = make_engine(world.sqlalchemy_url, pool_size=1)
    # The operator's mistake, made as the owner: the service's role may not grant.
    owner = make_engine(world.migration_sqlalchemy_url, pool_size=1)
    service_role = make_url(world.sqlalchemy_url).username
    relay = Service(["relay"], service_env(world), tmp_path, "relay").start()
    application = bootstrap(world)
    reader = DecodingReader(world, avro_codec(world), [world.topic_line_allocated])
    try:
        wait_for_leader(engine, relay)
        with owner.begin() as connection:
            connection.execute(text(f'REVOKE SELECT ON outbox FROM "{service_role}"'))

        def paused() -> bool:
            status, reason = readiness(relay)
            return status == 503 and reason.startswith("publishing paused: SQLSTATE 42501")

        wait_until(paused, 60, "the relay to report its pause on /readyz")
        assert relay.running, relay.log()[-3000:]
        assert leading_relay_pid(engine) == relay.pid  # paused, it keeps the lock
        with owner.begin() as connection:
            connection.execute(text(f'GRANT SELECT ON outbox TO "{service_role}"'))
        sku, orderid = random_sku(), random_orderid()
        application.bus.handle(commands.CreateBatch(random_batchref(), sku, 10, None))
        application.bus.handle(commands.Allocate(orderid, sku, 3))
        reader.read_until(
            lambda seen: any(r.value and r.value["orderid"] == orderid for r in seen), 60
        )
        wait_until_ready(relay)
        assert relay.log().count("publishing paused: SQLSTATE 42501") == 1  # once a minute
        assert "publishing resumed" in relay.log()
    finally:
        code = relay.terminate()
        print(f"--- relay log ---\n{relay.log()[-4000:]}")
        reader.close()
        application.close()
        engine.dispose()
        owner.dispose()
    assert code == 0


@pytest.mark.parametrize("process", ["consumer", "relay"])
def test_a_process_refuses_to_start_on_a_database_without_the_schema(
    world: Settings, process: str
) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "allocation.entrypoints.cli", process],
        env=service_env(world),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1, started.stderr
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert "allocation db upgrade" in lines[0]
    assert "Traceback" not in started.stderr
    assert dead_letter_count(world) == 0


def test_a_refused_privilege_pauses_the_consumer_saying_what_to_do_until_db_upgrade_grants_it(
    world: Settings, tmp_path: Path
) -> None:
    upgrade_schema(world)
    owner = make_engine(world.migration_sqlalchemy_url, pool_size=1)
    service_role = make_url(world.sqlalchemy_url).username
    consumer = Service(["consumer"], service_env(world), tmp_path, "consumer").start()
    try:
        wait_until_ready(consumer)
        # The operator's mistake: a privilege the service's role needs, taken away.
        with owner.begin() as connection:
            connection.execute(text(f'REVOKE INSERT ON products FROM "{service_role}"'))
        sender = CommandSender(world, avro_codec(world))
        sku, ref = random_sku(), random_batchref()
        sender.send(world.topic_add_batch, {"ref": ref, "sku": sku, "qty": 5, "eta": None}, sku)
        sender.flush()
        wait_until(lambda: "consumption paused" in consumer.log(), 90, "the consumer to pause")
        paused = next(line for line in consumer.log().splitlines() if "consumption paused" in line)
        assert "SQLSTATE 42501" in paused
        assert "MIGRATION_DATABASE_URL" in paused
        assert "allocation db upgrade" in paused
        assert consumer.running, consumer.log()[-3000:]
        assert dead_letter_count(world) == 0

        # What the log says to do: migrate as the owner, which grants the privileges again.
        upgraded = subprocess.run(
            [sys.executable, "-m", "allocation.entrypoints.cli", "db", "upgrade"],
            env=service_env(world),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert upgraded.returncode == 0, upgraded.stderr
        wait_for_batches(owner, [ref], timeout=60)
        assert dead_letter_count(world) == 0
    finally:
        code = consumer.terminate()
        print(f"--- consumer log ---\n{consumer.log()[-4000:]}")
        owner.dispose()
    assert code == 0
