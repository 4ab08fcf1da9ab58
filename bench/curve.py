"""Latency against offered load: p50 and p99 at each rate, and the knee.

One consumer and one relay serve every step; each step offers ``rate`` commands a second for
``curve_seconds`` (an open load: a late producer catches up, it does not slow down) and waits
until every event is back, so the next step starts from an empty pipeline. The knee is the
highest rate whose p99 stays under ``P99_LIMIT_MS``, narrowed by bisection between the highest
rate that passed and the lowest that failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from allocation.bootstrap import avro_codec
from bench import cpu
from bench.environment import BenchDatabase, run_topics
from bench.pipeline import cpu_groups, processes
from bench.scenarios import Sizes, warm_up
from bench.stats import percentiles
from bench.watch import EventWatcher
from bench.workload import allocate_values, latency_producer, paced, seed_skus

P99_LIMIT_MS = 50.0
Point = dict[str, Any]


def latency_curve(db: BenchDatabase, sizes: Sizes) -> dict[str, Any]:
    with run_topics(db.settings) as settings:
        skus = seed_skus(db, sizes.skus)
        watcher = EventWatcher(settings, avro_codec(settings), track_orders=True)
        watcher.start()
        watcher.wait_assigned()
        with (
            processes(db, settings, ["consumer", "relay"]) as running,
            cpu.metered(cpu_groups(db, running)) as meter,
        ):
            producer = latency_producer(settings)
            warm_up(producer, settings, skus, watcher)

            def step(rate: float, seconds: float = sizes.curve_seconds) -> Point:
                values = allocate_values(settings, skus, int(rate * seconds))
                expected = watcher.count + len(values)
                with meter.window() as window:
                    sent = paced(producer, settings, values, rate)
                    watcher.wait_for(expected, timeout=300)
                spread = max(sent.values()) - min(sent.values())
                return {
                    "rate": rate,
                    "offered_per_s": len(sent) / spread if spread else float(len(sent)),
                    **percentiles([(watcher.arrived[o] - at) * 1000 for o, at in sent.items()]),
                    "cpu_us_per_cmd": window.per_unit_us(len(values))["total"],
                }

            points = [step(rate) for rate in sizes.curve_rates]
            knee, crossed = find_knee(points, step, sizes.knee_steps)
            emptied = meter.emptied()
        watcher.stop()
    return {
        "points": sorted(points, key=lambda p: p["rate"]),
        "knee_per_s": knee,
        "knee_bounded": crossed,
        "p99_limit_ms": P99_LIMIT_MS,
        "step_seconds": sizes.curve_seconds,
        "cpu_groups_emptied": emptied,
    }


def find_knee(
    points: list[Point], measure: Callable[[float], Point], steps: int
) -> tuple[float, bool]:
    """The highest rate whose p99 stayed under the limit (0 if none did), after up to ``steps``
    bisections; False when no rate measured crossed the limit (the knee lies above them all)."""
    under = [p["rate"] for p in points if p["p99"] < P99_LIMIT_MS]
    low = max(under, default=0.0)
    over = [p["rate"] for p in points if p["p99"] >= P99_LIMIT_MS and p["rate"] > low]
    if not over:
        return low, False
    high = min(over)
    for _ in range(steps):
        middle = round((low + high) / 2 / 50) * 50  # rates in steps of 50/s
        if not low < middle < high:
            break
        point = measure(middle)
        points.append(point)
        if point["p99"] < P99_LIMIT_MS:
            low = middle
        else:
            high = middle
    return low, True
