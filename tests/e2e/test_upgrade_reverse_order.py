"""The deploy order gone wrong: this build's processes before `allocation db upgrade`.

The reverse of ``test_upgrade_under_traffic.py``. A database at the previous
release's head (migrated by that release's own `allocation db upgrade`) serves
orders through that release's consumer and relay, which used one role for everything.
This build's consumer and relay started on it, as that role or as a service role of
their own, refuse: one line naming `allocation db upgrade`, exit 1, before joining the
consumer group or taking the relay's lock, while the old processes go on applying and
publishing. Then the migration runs (two deploy jobs at once, under its advisory lock)
with orders still coming, and this build's processes start as the service role and
take over, relays first. Every order is then allocated and published exactly once,
each sku's events in the order its commands were sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from allocation.adapters.database import make_engine
from allocation.adapters.privileges import PRIVILEGE_ADVICE
from allocation.adapters.schema_migrations import SchemaTooOld, require_schema
from allocation.adapters.tables import inbox
from allocation.bootstrap import avro_codec
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from allocation.migrations import OLDEST_SCHEMA_REVISION
from testkit.databases import throwaway_database
from testkit.processes import (
    Service,
    all_allocated,
    leading_relay_pid,
    wait_for_batches,
    wait_for_leader,
    wait_until,
    wait_until_ready,
)
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, DecodingReader
from testkit.upgrades import Builds, UpgradeTraffic, assert_clean_logs
from tests.conftest import random_suffix

BURST = 60  # orders sent at each step, unapplied while it happens


@pytest.fixture
def database_owned(e2e_settings: Settings) -> Iterator[Settings]:
    """Topics of its own and an empty database of its own, the owner's URL in both
    DATABASE_URL and MIGRATION_DATABASE_URL: the previous release knew one role only,
    which both migrated and served."""
    ours = e2e_settings.with_prefix(f"reverse-{random_suffix()}", topic_partitions=3)
    create_contract_topics(ours)
    register_contract_schemas(ours)
    with throwaway_database(ours, prefix="allocation_reverse") as database:
        yield database.model_copy(update={"database_url": database.migration_database_url})
    drop_topics(ours)


@pytest.fixture
def database(database_owned: Settings) -> Iterator[Engine]:
    """The owner's engine on the test's database: the test's own reads."""
    engine = make_engine(database_owned.sqlalchemy_url)
    yield engine
    engine.dispose()


def revision(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())


def rebalances(consumer: Service) -> int:
    """The partition assignments and revocations the consumer has logged."""
    return len(re.findall(r"consumer: (?:assigned|revoked|lost) ", consumer.log()))


# The two ways this build meets the previous release's one role: it keeps that role, or it
# runs as a service role of its own (README, "Least privilege") that `allocation db upgrade`
# grants. Either way a process started before the migration says what to run.
REFUSALS = {
    "one-role": "the database schema is at revision {head}, older than {oldest}, the oldest this"
    " code runs on; run `allocation db upgrade`",
    "service-role": f"permission denied for table alembic_version; {PRIVILEGE_ADVICE}",
}


def test_this_build_on_the_previous_schema_refuses_until_migrated_then_takes_over(
    database_owned: Settings,
    e2e_settings: Settings,
    database: Engine,
    previous_build: Path,
    tmp_path: Path,
) -> None:
    # This build as deployed: the stack's service role on this database, the owner migrating.
    service_url = make_url(e2e_settings.database_url).set(database=database.url.database)
    s = database_owned.model_copy(
        update={"database_url": service_url.render_as_string(hide_password=False)}
    )
    engine = database
    builds = Builds(s, previous_build, tmp_path, old_settings=database_owned)
    # The previous release's deploy step: its own migrations, to its own head.
    migrated_by_old = builds.service(["db", "upgrade"], "old", "old-db-upgrade").start()
    assert migrated_by_old.wait(120) == 0, migrated_by_old.log()[-3000:]
    previous_head = revision(engine)
    # The premise: that head is older than this code needs (else it would simply run on it).
    with pytest.raises(SchemaTooOld):
        require_schema(engine)

    traffic = UpgradeTraffic(s, CommandSender(s, avro_codec(s)), f"rev-{random_suffix()}")
    reader = DecodingReader(
        s, avro_codec(s), [s.topic_line_allocated, s.topic_dlq, s.topic_command_rejected]
    )
    old_consumer = builds.process("consumer", "old").start()
    old_relay = builds.process("relay", "old").start()
    as_role = {"one-role": database_owned, "service-role": s}
    too_early = {
        (kind, roles): builds.process(kind, "new", f"new-{kind}-{roles}-too-early", settings)
        for kind in ("consumer", "relay")
        for roles, settings in as_role.items()
    }
    new_consumer, new_relay = builds.process("consumer", "new"), builds.process("relay", "new")
    processes = [old_consumer, old_relay, *too_early.values(), new_consumer, new_relay]
    try:
        traffic.stock()
        wait_for_batches(engine, traffic.refs)
        wait_for_leader(engine, old_relay)
        traffic.burst(BURST)
        traffic.unknown_sku_order("old")
        reader.read_until(lambda got: any(r.topic == s.topic_dlq for r in got), timeout=60)
        wait_until_ready(old_consumer)
        assigned = rebalances(old_consumer)

        # The deploy order gone wrong: this build's processes before the migration.
        for process in too_early.values():
            process.start()
        during = traffic.burst(BURST)
        for (kind, roles), process in too_early.items():
            assert process.wait(60) == 1, process.log()[-3000:]
            said = [line for line in process.log().splitlines() if line and "=== start" not in line]
            refusal = REFUSALS[roles].format(head=previous_head, oldest=OLDEST_SCHEMA_REVISION)
            assert said == [f"allocation {kind}: error: {refusal}"]
        # The old processes served on: they applied what came meanwhile (the inbox keys of
        # the previous release name no topic), the group never rebalanced, the lock stayed.
        wait_until(lambda: all_allocated(engine, during), 60, "the old consumer to apply")
        with engine.connect() as connection:
            keys = set(connection.execute(select(inbox.c.message_id)).scalars())
        assert {f"id:{orderid}" for orderid in during} <= keys
        assert not {f"id:{s.topic_allocate}:{orderid}" for orderid in during} & keys
        assert rebalances(old_consumer) == assigned, old_consumer.log()[-3000:]
        assert leading_relay_pid(engine) == old_relay.pid

        # The migration step, with orders in flight: two deploy jobs at once take turns.
        migrations = [
            builds.service(["db", "upgrade"], "new", f"new-db-upgrade-{n}").start()
            for n in range(2)
        ]
        traffic.burst(BURST)
        for migration in migrations:
            assert migration.wait(120) == 0, migration.log()[-3000:]
        require_schema(engine)
        traffic.burst(BURST)

        # Then the roll-out as the README orders it: relays, then consumers.
        new_relay.start()
        traffic.burst(BURST)
        assert old_relay.terminate() == 0, old_relay.log()[-3000:]
        wait_for_leader(engine, new_relay)
        new_consumer.start()
        traffic.burst(BURST)
        wait_until_ready(new_consumer)
        assert old_consumer.terminate() == 0, old_consumer.log()[-3000:]
        traffic.unknown_sku_order("new")
        traffic.burst(BURST)
        traffic.sentinel()
        received = reader.read_until(traffic.everything_out, timeout=120)
    finally:
        reader.close()
        codes = {
            p.log_path.stem: p.terminate()
            for p in processes
            if p.process is not None and p not in too_early.values()
        }
    assert all(code == 0 for code in codes.values()), codes

    traffic.assert_exactly_once(received, engine)
    traffic.assert_rejections(received)
    assert_clean_logs(processes)
