"""Each figure of ``make bench``: one function per measurement, one run per call."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import delete, func, insert, select, text

from allocation.adapters.database import make_engine
from allocation.adapters.security import kafka_client_security
from allocation.adapters.tables import batches, consumer_offsets, outbox, products
from allocation.bootstrap import avro_codec, bootstrap
from allocation.config import Settings
from allocation.domain import commands
from bench import cpu
from bench.environment import BenchDatabase, run_topics
from bench.servers import Servers, find_servers
from bench.watch import EventWatcher, peak_rss_mib
from testkit.processes import (
    Service,
    service_env,
    wait_for_leader,
    wait_until,
    wait_until_ready,
)

LOGS = Path(__file__).parent / "results" / "tmp"


@dataclass(frozen=True)
class Sizes:
    commands: int = 20_000
    skus: int = 200
    latency_rate: int = 500
    latency_seconds: float = 30.0
    relay_rows: int = 50_000
    consumer_commands: int = 20_000  # polls of 500: the first is not timed
    growth_history: int = 100_000
    growth_samples: int = 300
    ceiling_seconds: float = 10.0
    curve_rates: tuple[int, ...] = (500, 1_000, 2_000, 4_000)
    curve_seconds: float = 6.0
    knee_steps: int = 2
    http_requests: int = 2_000
    http_skus: int = 50
    http_clients: int = 16
    scaleout_commands: int = 30_000
    scaleout_consumers: tuple[int, ...] = (1, 2, 3)
    scaleout_cores: float = 0.33  # each consumer's CPU cap, in cores
    runs: int = 3


QUICK = Sizes(
    commands=3_000,
    skus=50,
    latency_seconds=5.0,
    relay_rows=15_000,  # three of the relay's chunks: the first mark is not timed
    consumer_commands=3_000,
    growth_history=10_000,
    growth_samples=60,
    ceiling_seconds=3.0,
    curve_seconds=2.0,
    knee_steps=1,
    http_requests=300,
    scaleout_commands=6_000,
)


def seed_skus(db: BenchDatabase, count: int, stock: int = 10_000_000) -> list[str]:
    """Skus with one warehouse batch each, stock to spare."""
    tag = uuid.uuid4().hex[:6]
    skus = [f"bench-{tag}-{n}" for n in range(count)]
    with db.engine.begin() as connection:
        connection.execute(insert(products), [{"sku": s, "version_number": 1} for s in skus])
        connection.execute(
            insert(batches),
            [{"reference": f"{s}-b", "sku": s, "purchased_quantity": stock} for s in skus],
        )
    return skus


def allocate_values(
    settings: Settings, skus: list[str], count: int
) -> list[tuple[str, str, bytes]]:
    """(orderid, sku, encoded Allocate) for ``count`` orders spread over the skus."""
    codec = avro_codec(settings)
    tag = uuid.uuid4().hex[:6]
    out = []
    for n in range(count):
        sku, orderid = skus[n % len(skus)], f"o-{tag}-{n}"
        record = {"orderid": orderid, "sku": sku, "qty": 1}
        out.append((orderid, sku, codec.encode(settings.topic_allocate, record)))
    return out


def fast_producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


@contextmanager
def processes(
    db: BenchDatabase,
    settings: Settings,
    names: list[str],
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Service]]:
    """Start the named processes ("consumer", "relay" or "baseline"; a suffix after a dash names
    one of several: "consumer-2"), with ``extra_env`` over the settings' environment; wait until
    they have partitions or lead."""
    LOGS.mkdir(parents=True, exist_ok=True)
    level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    env = service_env(settings, **{"LOG_LEVEL": level, **(extra_env or {})})
    started: dict[str, Service] = {}
    for name in names:
        log_name = f"{settings.consumer_group}-{name}"
        command = name.split("-", 1)[0]
        if command == "baseline":
            service = Service([], env, LOGS, log_name, module="bench.baseline")
        else:
            service = Service([command], env, LOGS, log_name)
        started[name] = service.start()
    try:
        for name, service in started.items():
            command = name.split("-", 1)[0]
            if command == "relay":
                wait_for_leader(db.engine, service)
            elif command == "baseline":
                wait_until(lambda s=service: baseline_assigned(settings, s), 60, "the baseline")
            else:
                wait_until_ready(service)
        yield started
    finally:
        for service in started.values():
            if service.running:
                service.terminate()


def baseline_assigned(settings: Settings, baseline: Service) -> bool:
    """Whether the broker gave the book's consumer (a dynamic member) its partitions."""
    admin = AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **kafka_client_security(settings)}
    )
    group = admin.describe_consumer_groups([settings.consumer_group])[settings.consumer_group]
    return any(
        member.client_id == f"bench-baseline-{baseline.pid}" and member.assignment.topic_partitions
        for member in group.result(timeout=10).members
    )


def e2e(
    db: BenchDatabase,
    sizes: Sizes,
    pipeline: list[str],
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Commands produced as fast as possible until every Allocated was read back; the service's
    processes run with ``extra_env`` over the settings' environment."""
    with run_topics(db.settings) as settings:
        skus = seed_skus(db, sizes.skus)
        values = allocate_values(settings, skus, sizes.commands)
        watcher = EventWatcher(settings, avro_codec(settings))
        watcher.start()
        watcher.wait_assigned()
        with processes(db, settings, pipeline, extra_env) as running:
            producer = fast_producer(settings)
            with cpu.metered(cpu_groups(db, running)) as meter:
                before = meter.sample()
                started = time.monotonic()
                produce_all(producer, settings.topic_allocate, values)
                watcher.wait_for(sizes.commands, timeout=600)
                used = meter.used(before, meter.sample())
                emptied = meter.emptied()
            elapsed = watcher.last_at - started
            rss = {f"{n}_peak_rss_mib": peak_rss_mib(s.pid) for n, s in running.items()}
        watcher.stop()
    return {
        "cmds_per_s": sizes.commands / elapsed,
        "seconds": elapsed,
        **rss,
        "cpu_us_per_cmd": cpu.per_unit_us(used, sizes.commands),
        "cpu_method": meter.method,
        "cpu_groups_emptied": emptied,
    }


def cpu_groups(db: BenchDatabase, running: dict[str, Service]) -> dict[str, cpu.Lister]:
    """What the CPU figures are made of: the stack's servers and the service's processes."""
    groups: dict[str, cpu.Lister] = {}
    servers: Servers | None = None
    if db.servers is not None:
        # Found again for each window: another developer's fault test may have restarted one.
        try:
            servers = find_servers(db.servers.home)
        except LookupError as missing:
            print(f"the servers' CPU is not measured in this run: {missing}", file=sys.stderr)
            servers = None
    if servers is not None:
        groups["broker"] = lambda: [servers.broker]
        groups["postgres"] = servers.postgres
        groups["registry"] = lambda: [servers.registry]
    for name, service in running.items():
        groups[name] = lambda pid=service.pid: [pid]
    return groups


def produce_all(producer: Producer, topic: str, values: list[tuple[str, str, bytes]]) -> None:
    """Every order (``allocate_values``) as fast as the producer takes them, then waits for
    the broker's acknowledgements."""
    for _orderid, sku, value in values:
        produce(producer, topic, sku, value)
    producer.flush(120)


def produce(producer: Producer, topic: str, key: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value)
            return
        except BufferError:
            producer.poll(0.05)


def latency(db: BenchDatabase, sizes: Sizes) -> list[float]:
    """Milliseconds from produce to the Allocated event read back, at a steady offered load."""
    with run_topics(db.settings) as settings:
        skus = seed_skus(db, sizes.skus)
        total = int(sizes.latency_rate * sizes.latency_seconds)
        values = allocate_values(settings, skus, total)
        watcher = EventWatcher(settings, avro_codec(settings), track_orders=True)
        watcher.start()
        watcher.wait_assigned()
        with processes(db, settings, ["consumer", "relay"]):
            producer = latency_producer(settings)
            warmed = warm_up(producer, settings, skus, watcher)
            sent = paced(producer, settings, values, sizes.latency_rate)
            watcher.wait_for(warmed + total, timeout=120)
        watcher.stop()
    return [(watcher.arrived[o] - at) * 1000 for o, at in sent.items()]


def warm_up(producer: Producer, settings: Settings, skus: list[str], watcher: EventWatcher) -> int:
    """Send a second's worth of commands at 500/s and wait for their events; returns the count.

    A process that just became ready still connects, looks up schema ids and versions and
    fills its caches while the first commands wait: about 0.5 s of them queue up behind
    that. Latency figures are of the steady state, so that start is not measured.
    """
    warm = allocate_values(settings, skus, 500)
    expected = watcher.count + len(warm)
    paced(producer, settings, warm, 500)
    watcher.wait_for(expected, timeout=120)
    return len(warm)


def latency_producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "linger.ms": 0,
        }
    )


def paced(
    producer: Producer, settings: Settings, values: list[tuple[str, str, bytes]], rate: float
) -> dict[str, float]:
    """Produces ``values`` at ``rate`` a second (catching up when late, as an open load does);
    returns the monotonic time each order was sent."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for n, (orderid, sku, value) in enumerate(values):
        pause = started + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # sleep, not spin: the service shares these two cores
        sent[orderid] = time.monotonic()
        produce(producer, settings.topic_allocate, sku, value)
        producer.poll(0)
    producer.flush(30)
    return sent


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
            before = meter.sample()
            first, start = time.monotonic(), applied()
            wanted = sizes.consumer_commands
            wait_until(lambda: applied() >= wanted, 600, "every command to be applied")
            used = meter.used(before, meter.sample())
            emptied = meter.emptied()
            if start >= wanted:
                raise RuntimeError(
                    f"the consumer applied all {wanted} commands in its first poll: give it"
                    f" more than CONSUMER_POLL_SIZE ({settings.consumer_poll_size}) to time it"
                )
            rate = (wanted - start) / (time.monotonic() - first)
            measured = alone(rate, used, wanted - start, meter, emptied)
        with db.engine.begin() as connection:  # no relay ran: its events go with their topics
            connection.execute(delete(outbox).where(outbox.c.topic.in_(settings.event_topics)))
        return measured


def alone(
    rate: float, used: dict[str, float], units: int, meter: cpu.Meter, emptied: list[str]
) -> dict[str, object]:
    """A rate with the CPU per unit of each process over its window, and the cores each used
    at that rate: a process near 1.0 is bound by its own interpreter, the ceiling of one
    process whatever the others do; well under it, it waits on the others."""
    us = cpu.per_unit_us(used, units)
    return {
        "per_s": rate,
        "cpu_us": us,
        "cores": {name: per_unit * rate / 1e6 for name, per_unit in us.items()},
        "cpu_method": meter.method,
        "cpu_groups_emptied": emptied,
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
            before = meter.sample()
            pending = outbox.c.published_at.is_(None)
            wait_until(lambda: not exists(pending), 600, "the outbox to drain", every=0.5)
            used = meter.used(before, meter.sample())
            emptied = meter.emptied()
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
    return alone(rate, used, after_first, meter, emptied)


def commit_ceiling(db: BenchDatabase, seconds: float = 10.0, clients: int = 4) -> float:
    """Single-row update-and-commit transactions per second with pgbench, 4 connections."""
    # Made by the owner role (the service's may not create a table); the default privileges
    # let the service's role, which pgbench connects as, update its rows.
    owner = make_engine(db.settings.migration_sqlalchemy_url, pool_size=1)
    try:
        with owner.begin() as connection:
            connection.execute(
                text("CREATE TABLE IF NOT EXISTS bench_ceiling (id int primary key, n bigint)")
            )
            connection.execute(text("TRUNCATE bench_ceiling"))
            connection.execute(
                text("INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, 1000) g")
            )
    finally:
        owner.dispose()
    script = LOGS / "ceiling.sql"
    LOGS.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "\\set id random(1, 1000)\nUPDATE bench_ceiling SET n = n + 1 WHERE id = :id;\n"
    )
    url = db.settings.database_url
    result = subprocess.run(
        [
            _pgbench(),
            "-n",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(int(seconds)),
            "-f",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no tps:\n{result.stdout}\n{result.stderr}")


def _pgbench() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(found[-1]) if found else "pgbench"


def growth(db: BenchDatabase, sizes: Sizes) -> dict[str, float]:
    """Allocation latency on a sku with a long history over that on a sku with ten allocations."""
    long_sku, short_sku = seed_skus(db, 2)
    for sku, history in ((long_sku, sizes.growth_history), (short_sku, 10)):
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    """
                    WITH b AS (SELECT id FROM batches WHERE sku = :sku)
                    INSERT INTO allocations (batch_id, orderid, sku, qty)
                    SELECT b.id, 'history-' || g, :sku, 1 FROM b, generate_series(1, :n) AS g
                    """
                ),
                {"sku": sku, "n": history},
            )
            connection.execute(
                text("UPDATE batches SET allocated_quantity = :n WHERE sku = :sku"),
                {"sku": sku, "n": history},
            )
    # Only the table's owner may ANALYZE it (the service's role would be skipped with a warning).
    owner = make_engine(db.settings.migration_sqlalchemy_url, pool_size=1)
    try:
        with owner.begin() as connection:
            connection.execute(text("ANALYZE allocations"))
    finally:
        owner.dispose()
    application = bootstrap(db.settings)
    timings: dict[str, list[float]] = {long_sku: [], short_sku: []}
    try:
        for n in range(sizes.growth_samples):
            for sku in (long_sku, short_sku):
                started = time.perf_counter()
                application.bus.handle(commands.Allocate(f"g-{n}", sku, 1))
                timings[sku].append(time.perf_counter() - started)
    finally:
        application.close()
    long_ms = statistics.median(timings[long_sku]) * 1000
    short_ms = statistics.median(timings[short_sku]) * 1000
    return {
        "growth_ratio": long_ms / short_ms,
        "long_history_ms": long_ms,
        "short_history_ms": short_ms,
    }
