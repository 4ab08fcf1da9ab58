"""``allocation offsets show | reset`` as an operator runs them against the running service."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import Engine

from allocation.config import Settings
from testkit.processes import Service, service_env, wait_for_batches, wait_until, wait_until_ready
from testkit.traffic import CommandSender
from tests.conftest import random_batchref, random_sku
from tests.e2e.test_cli import allocation

Table = dict[tuple[str, int], tuple[str, str, str]]


def shown(s: Settings) -> Table:
    """(topic, partition) -> (postgresql, kafka, log end) as ``offsets show`` prints them."""
    result = allocation(s, "offsets", "show")
    assert result.returncode == 0, result.stderr
    rows: Table = {}
    for line in result.stdout.splitlines()[2:]:
        topic, partition, stored, committed, end, _lag = line.split()
        rows[(topic, int(partition))] = (stored, committed, end)
    return rows


def test_offsets_are_shown_from_both_stores_and_reset_only_with_the_consumers_stopped(
    e2e_settings: Settings, engine: Engine, sender: CommandSender, log_dir: Path
) -> None:
    s = e2e_settings.model_copy(update={"consumer_group": f"offsets-{uuid.uuid4().hex[:6]}"})
    consumer = Service(["consumer"], service_env(s), log_dir, "consumer").start()
    try:
        wait_until_ready(consumer)
        refs = [random_batchref() for _ in range(4)]
        for ref in refs:
            sender.create_batch(s.topic_add_batch, ref, random_sku(), 3)
        wait_for_batches(engine, refs, timeout=90)

        def caught_up() -> bool:
            rows = shown(s)
            return all(
                stored == committed == end or end == "0"  # a partition never written to
                for (topic, _), (stored, committed, end) in rows.items()
                if topic == s.topic_add_batch
            )

        wait_until(caught_up, 30, "PostgreSQL's and Kafka's offsets to reach the log end")

        refused = allocation(s, "offsets", "reset", "--to-earliest")
        assert refused.returncode == 1
        assert "active member(s): stop every consumer of the group first" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        assert consumer.terminate() == 0
    before = shown(s)

    planned = allocation(
        s, "offsets", "reset", "--to-earliest", "--topic", s.topic_add_batch, "--dry-run"
    )
    assert planned.returncode == 0, planned.stderr
    assert "message(s) again" in planned.stdout
    assert "dry run: nothing changed" in planned.stdout
    assert shown(s) == before

    reset = allocation(s, "offsets", "reset", "--to-earliest", "--topic", s.topic_add_batch)
    assert reset.returncode == 0, reset.stderr
    after = shown(s)
    for (topic, partition), (stored, committed, _end) in after.items():
        if topic == s.topic_add_batch:
            assert stored == committed == "0", (topic, partition)
        else:
            assert (stored, committed) == before[(topic, partition)][:2]


def test_a_time_without_a_zone_is_refused_plainly(e2e_settings: Settings) -> None:
    result = allocation(e2e_settings, "offsets", "reset", "--to-datetime", "2026-11-28T07:00")
    assert result.returncode == 2
    assert "has no time zone" in result.stderr
    assert "Traceback" not in result.stderr
