"""A rolling upgrade from the previous release, with commands in flight: nothing lost or doubled.

The previous release's consumer and relay (its code taken from git: ``UPGRADE_FROM``)
run against the database at this build's migration head, as they do once the
deploy's migration step ran. Commands keep coming while the processes are
replaced one kind at a time in the README's order (relays, then consumers), each
switch made with a burst of commands still unapplied. Every order must then be
allocated once and published once (by ``event_id``, each sku's in the order sent),
nothing else dead-lettered, every process stopped cleanly and no error logged. An
order for an unknown sku shows which build applied it: the previous release
dead-lettered rejections, this one publishes a CommandRejected.

The reverse, this build's code meeting the previous release's schema, is
``test_upgrade_reverse_order.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from allocation.bootstrap import avro_codec
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import wait_for_batches, wait_for_leader, wait_until_ready
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, DecodingReader
from testkit.upgrades import Builds, UpgradeTraffic, assert_clean_logs
from tests.conftest import random_suffix

BURST = 60  # commands sent right before each switch, unapplied while it happens


@pytest.fixture
def world(e2e_settings: Settings) -> Iterator[Settings]:
    """Topics and a consumer group of the test's own (it runs two builds' consumers)."""
    ours = e2e_settings.with_prefix(f"upgrade-{random_suffix()}", topic_partitions=3)
    create_contract_topics(ours)
    register_contract_schemas(ours)
    yield ours
    drop_topics(ours)


def test_a_rolling_upgrade_under_traffic_loses_and_doubles_nothing(
    world: Settings, engine: Engine, previous_build: Path, tmp_path: Path
) -> None:
    s = world
    traffic = UpgradeTraffic(s, CommandSender(s, avro_codec(s)), f"up-{random_suffix()}")
    builds = Builds(s, previous_build, tmp_path)
    reader = DecodingReader(
        s, avro_codec(s), [s.topic_line_allocated, s.topic_dlq, s.topic_command_rejected]
    )
    old_consumer = builds.process("consumer", "old").start()
    old_relay = builds.process("relay", "old").start()
    new_consumer, new_relay = builds.process("consumer", "new"), builds.process("relay", "new")
    processes = [old_consumer, old_relay, new_consumer, new_relay]
    try:
        traffic.stock()
        wait_for_batches(engine, traffic.refs)
        wait_for_leader(engine, old_relay)
        traffic.burst(BURST)
        traffic.unknown_sku_order("old")
        traffic.burst(BURST)
        # How the consumer answers a rejection proves it is the old code that runs.
        reader.read_until(lambda got: any(r.topic == s.topic_dlq for r in got), timeout=60)
        # Relays first (the README's order): the new one takes over the lock the old one frees.
        new_relay.start()
        traffic.burst(BURST)
        assert old_relay.terminate() == 0, old_relay.log()[-3000:]
        wait_for_leader(engine, new_relay)
        traffic.burst(BURST)
        # Then the consumers: the new one joins the group, the old one leaves it.
        new_consumer.start()
        traffic.burst(BURST)
        wait_until_ready(new_consumer)
        traffic.burst(BURST)
        assert old_consumer.terminate() == 0, old_consumer.log()[-3000:]
        traffic.unknown_sku_order("new")
        traffic.burst(BURST)
        traffic.sentinel()
        received = reader.read_until(traffic.everything_out, timeout=120)
    finally:
        reader.close()
        codes = {p.log_path.stem: p.terminate() for p in processes if p.process is not None}
    assert all(code == 0 for code in codes.values()), codes

    traffic.assert_exactly_once(received, engine)
    traffic.assert_rejections(received)
    assert_clean_logs(processes)
