"""The consumer alone, from a full topic, and the relay alone, from a full outbox: each one's
rate, with the CPU per unit of every process over the same window."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import delete, func, select, text

from allocation.adapters.tables import consumer_offsets, outbox
from bench import cpu
from bench.environment import BenchDatabase, run_topics
from bench.pipeline import cpu_groups, processes
from bench.scenarios import Sizes
from bench.workload import allocate_values, fast_producer, produce_all, seed_skus
from testkit.processes import wait_until


def consumer_only(db: BenchDatabase, sizes: Sizes) -> dict[str, object]:
    """Commands applied and committed per second, from a topic filled beforehand; and the CPU
    of each process per command over the same window (``alone``).

    Progress is read from the offsets the consumer commits with each poll (a few rows by
    their key), so that watching costs PostgreSQL next to nothing: counting the run's
    allocations ten times a second took a share of the two cores the consumer shares.
    """
    with run_topics(db.settings) as settings:
        skus = seed_skus(db, sizes.skus)
        producer = fast_producer(settings)
        produce_all(
            producer,
            settings.topic_allocate,
            allocate_values(settings, skus, sizes.consumer_commands),
        )
        query = select(func.coalesce(func.sum(consumer_offsets.c.next_offset), 0)).where(
            consumer_offsets.c.consumer_group == settings.consumer_group,
            consumer_offsets.c.topic == settings.topic_allocate,
        )

        def applied() -> int:
            with db.engine.connect() as connection:
                return int(connection.execute(query).scalar_one())

        with (
            processes(db, settings, ["consumer"]) as running,
            cpu.metered(cpu_groups(db, running)) as meter,
        ):
            wait_until(lambda: applied() > 0, 120, "the consumer to start applying", every=0.02)
            wanted = sizes.consumer_commands
            with meter.window() as window:
                first, start = time.monotonic(), applied()
                wait_until(lambda: applied() >= wanted, 600, "every command to be applied")
                last = time.monotonic()
            if start >= wanted:
                raise RuntimeError(
                    f"the consumer applied all {wanted} commands in its first poll: give it"
                    f" more than CONSUMER_POLL_SIZE ({settings.consumer_poll_size}) to time it"
                )
            measured = alone((wanted - start) / (last - first), window, wanted - start, meter)
        with db.engine.begin() as connection:  # no relay ran: its events go with their topics
            connection.execute(delete(outbox).where(outbox.c.topic.in_(settings.event_topics)))
        return measured


def alone(rate: float, window: cpu.Window, units: int, meter: cpu.Meter) -> dict[str, object]:
    """A rate with the CPU per unit of each process over its window, and the cores each used
    at that rate: a process near 1.0 is bound by its own interpreter, the ceiling of one
    process whatever the others do; well under it, it waits on the others."""
    us = window.per_unit_us(units)
    return {
        "per_s": rate,
        "cpu_us": us,
        "cores": {name: per_unit * rate / 1e6 for name, per_unit in us.items()},
        "cpu_method": meter.method,
        "cpu_groups_emptied": window.emptied,
    }


def relay_only(db: BenchDatabase, sizes: Sizes) -> dict[str, object]:
    """Outbox rows published per second, from an outbox filled beforehand; and the CPU of
    each process per row over the same window (``alone``).

    Timed by the rows' own ``published_at`` (each mark's statement time): the rows marked
    after the first mark, over the time from the first mark to the last. The CPU is sampled
    as the first mark shows (looked for every 20 ms) and once the outbox is drained (asked
    twice a second meanwhile), so it counts from a little after the first mark: part of the
    next chunk's work precedes it, which puts the CPU per row a few per cent low.
    """
    with run_topics(db.settings) as settings:
        tag = uuid.uuid4().hex[:6]
        topic = settings.topic_line_allocated
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    """
                    INSERT INTO outbox (event_id, event_type, topic, key, payload, occurred_at)
                    SELECT gen_random_uuid(), 'Allocated', :topic, 'sku-' || (g % 200),
                           jsonb_build_object('orderid', :tag || g, 'sku', 'sku-' || (g % 200),
                                              'qty', 1, 'batchref', 'b-' || (g % 200)),
                           now()
                    FROM generate_series(1, :rows) AS g
                    """
                ),
                {"topic": topic, "rows": sizes.relay_rows, "tag": tag},
            )
        mine = outbox.c.topic == topic

        def exists(*where: Any) -> bool:
            with db.engine.connect() as connection:
                found = select(select(outbox.c.id).where(mine, *where).exists())
                return bool(connection.execute(found).scalar_one())

        with (
            processes(db, settings, ["relay"]) as running,
            cpu.metered(cpu_groups(db, running)) as meter,
        ):
            published = outbox.c.published_at.is_not(None)
            wait_until(lambda: exists(published), 120, "the first mark", every=0.02)
            pending = outbox.c.published_at.is_(None)
            with meter.window() as window:
                wait_until(lambda: not exists(pending), 600, "the outbox to drain", every=0.5)
        with db.engine.connect() as connection:
            marks = connection.execute(
                select(outbox.c.published_at, func.count())
                .where(mine)
                .group_by(outbox.c.published_at)
                .order_by(outbox.c.published_at)
            ).all()
    if len(marks) < 2:
        raise RuntimeError(
            f"the relay marked all {sizes.relay_rows} rows at once: give it more rows than"
            f" RELAY_CHUNK_SIZE ({settings.relay_chunk_size}) to time it"
        )
    after_first = sum(count for _, count in marks[1:])
    rate = after_first / (marks[-1][0] - marks[0][0]).total_seconds()
    return alone(rate, window, after_first, meter)
