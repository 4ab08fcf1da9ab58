"""A PostgreSQL backup restored under load: every command is applied exactly once in the end.

The README's restore runbook, played out: commands keep coming while a backup is
taken and after it; the consumer stops, the backup is restored, the consumer
starts on it. The offsets came back with the data, so it reads again exactly what
the backup lacks. The same restore with offsets only in Kafka loses commands,
which the second test shows (so the first could fail).
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from allocation.adapters.database import make_engine
from allocation.adapters.tables import batches
from allocation.bootstrap import avro_codec, upgrade_schema
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from allocation.entrypoints.status import dead_letter_count
from testkit.processes import Service, service_env, wait_for_batches, wait_until_ready
from testkit.topics import drop_topics
from testkit.traffic import CommandSender
from tests.conftest import fresh_database, random_sku


@pytest.fixture(scope="module")
def topics(settings: Settings) -> Iterator[Settings]:
    """Topics and a consumer group of this module's own: a restore re-reads from offset 0."""
    ours = settings.with_prefix(f"restore-{uuid.uuid4().hex[:6]}", topic_partitions=3)
    create_contract_topics(ours)
    register_contract_schemas(ours)
    yield ours
    drop_topics(ours)


@pytest.fixture
def database(topics: Settings) -> Iterator[Settings]:
    with fresh_database(topics) as ours:
        upgrade_schema(ours)
        yield ours


def pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def libpq_url(settings: Settings) -> str:
    """The owner's URL, for libpq: it dumps and restores, grants included."""
    return (
        make_url(settings.migration_sqlalchemy_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def missing(engine: Engine, refs: list[str]) -> set[str]:
    with engine.connect() as connection:
        found = connection.execute(select(batches.c.reference).where(batches.c.reference.in_(refs)))
        return set(refs) - set(found.scalars())


def restore_under_load(
    s: Settings, log_dir: Path, backup: Path
) -> tuple[Settings, list[str], list[str]]:
    """Play the runbook; the settings of the restored database, every ref sent, and the
    refs sent once the restored consumer ran (to wait for)."""
    sender = CommandSender(s, avro_codec(s))
    sku = random_sku()
    refs = [f"r{n:04d}-{uuid.uuid4().hex[:6]}" for n in range(240)]
    before, during, after, last = refs[:80], refs[80:140], refs[140:200], refs[200:]

    def send(chunk: list[str]) -> None:
        for ref in chunk:
            sender.send(s.topic_add_batch, {"ref": ref, "sku": sku, "qty": 5, "eta": None}, ref)
        sender.flush()

    env = service_env(s, CONSUMER_INSTANCE_ID=f"restore-{uuid.uuid4().hex[:6]}")
    consumer = Service(["consumer"], env, log_dir, "consumer").start()
    engine = make_engine(s.sqlalchemy_url)
    try:
        wait_until_ready(consumer)
        send(before)
        wait_for_batches(engine, before, timeout=90)
        load = threading.Thread(target=send, args=(during,))
        load.start()  # the backup is taken while commands are applied
        subprocess.run(
            [pg_tool("pg_dump"), "-Fc", "-f", str(backup), "--dbname", libpq_url(s)], check=True
        )
        load.join()
        send(after)  # certainly not in the backup
        wait_for_batches(engine, before + during + after, timeout=90)
    finally:
        assert consumer.terminate() == 0
        engine.dispose()
    return s, refs, last


@pytest.mark.timeout(300)
@pytest.mark.parametrize("offsets_in_postgresql", [True, False], ids=["postgresql", "kafka-only"])
def test_a_backup_restored_under_load_ends_with_every_command_applied_exactly_once(
    database: Settings, tmp_path: Path, offsets_in_postgresql: bool
) -> None:
    backup = tmp_path / "backup.dump"
    s, refs, last = restore_under_load(database, tmp_path, backup)
    dead_before = dead_letter_count(s)
    with fresh_database(s) as restored:
        subprocess.run(
            [pg_tool("pg_restore"), "--no-owner", "--dbname", libpq_url(restored), str(backup)],
            check=True,
        )
        engine = make_engine(restored.sqlalchemy_url)
        if not offsets_in_postgresql:  # as before offsets were kept with the data
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM consumer_offsets"))
        env = service_env(restored, CONSUMER_INSTANCE_ID=f"restored-{uuid.uuid4().hex[:6]}")
        consumer = Service(["consumer"], env, tmp_path, "restored").start()
        try:
            wait_until_ready(consumer)
            sender = CommandSender(restored, avro_codec(restored))
            for ref in last:
                sender.send(
                    s.topic_add_batch, {"ref": ref, "sku": random_sku(), "qty": 5, "eta": None}, ref
                )
            sender.flush()
            wait_for_batches(engine, last, timeout=90)
            lost = missing(engine, refs)
            with engine.connect() as connection:
                total = connection.execute(
                    select(func.count()).select_from(batches).where(batches.c.reference.in_(refs))
                ).scalar_one()
        finally:
            assert consumer.terminate() == 0
            print(consumer.log()[-3000:])
            engine.dispose()
    doubled = dead_letter_count(s) - dead_before  # a CreateBatch applied twice: DuplicateBatchRef
    if offsets_in_postgresql:
        assert (sorted(lost), doubled, total) == ([], 0, len(refs))
    else:
        assert lost, "with offsets only in Kafka the restore should have lost commands"
