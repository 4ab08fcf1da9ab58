"""The end-to-end figures of ``make bench``: throughput with the CPU of every process, and
latency at a steady load; one function per measurement, one run per call. The sizes of all
figures are here (``Sizes``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from allocation.bootstrap import avro_codec
from allocation.config import Settings
from bench import cpu
from bench.environment import BenchDatabase, run_topics
from bench.pipeline import cpu_groups, processes
from bench.watch import EventWatcher, peak_rss_mib
from bench.workload import (
    allocate_values,
    fast_producer,
    latency_producer,
    paced,
    produce_all,
    seed_skus,
)


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


def e2e(
    db: BenchDatabase,
    sizes: Sizes,
    pipeline: list[str],
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
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
            with cpu.metered(cpu_groups(db, running)) as meter, meter.window() as window:
                started = time.monotonic()
                produce_all(producer, settings.topic_allocate, values)
                watcher.wait_for(sizes.commands, timeout=600)
            elapsed = watcher.last_at - started
            rss = {f"{n}_peak_rss_mib": peak_rss_mib(s.pid) for n, s in running.items()}
        watcher.stop()
    return {
        "cmds_per_s": sizes.commands / elapsed,
        "seconds": elapsed,
        **rss,
        "cpu_us_per_cmd": window.per_unit_us(sizes.commands),
        "cpu_method": meter.method,
        "cpu_groups_emptied": window.emptied,
    }


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
