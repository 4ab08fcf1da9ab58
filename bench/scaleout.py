"""The scale-out figure (issue 13): N = 1, 2, 3 consumer processes on one topic of 12 partitions.

Each consumer runs in a CPU-capped cgroup of its own (a third of a core by default, so that the
machine's two cores do not hide the effect); the broker, the registry and PostgreSQL stay
outside the caps. For each N: the consumers start on an empty topic and are capped, the run
waits until the 12 partitions are spread evenly, then produces the commands as fast as possible
and times them until every one is applied (a row in ``allocations``). No relay runs: the figure
is the consumers' and the database's. Beside commands/s it keeps what bounds each N: the share
of CFS periods in which the consumers were throttled (near 100%: the caps bound it) and the
cores the database, the broker and the whole machine used meanwhile.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy import delete, func, select

from allocation.adapters.kafka import admin_client
from allocation.adapters.tables import allocations, outbox
from allocation.config import Settings
from bench import cpu, cpu_caps
from bench.environment import BenchDatabase, run_topics
from bench.pipeline import cpu_groups, processes
from bench.scenarios import Sizes
from bench.workload import allocate_values, fast_producer, produce_all, seed_skus
from testkit.processes import wait_until

PARTITIONS = 12
# The broker's default assignor under KIP-848 (uniform) evens out the count of partitions over
# all three command topics, not each topic's: with 3 consumers it gave one of them all 12 of
# `allocate` (the only topic with load here) and the others the idle topics. The range assignor
# divides each topic's partitions on its own.
ASSIGNOR = {"KAFKA_CONFIG_GROUP_REMOTE_ASSIGNOR": "range"}


def scaleout(db: BenchDatabase, sizes: Sizes) -> dict[str, Any]:
    """One run over every N; ``{"skipped": why}`` when no CPU caps can be made."""
    try:
        with cpu_caps.capped() as caps:
            return {
                f"consumers_{n}": with_consumers(db, sizes, caps, n)
                for n in sizes.scaleout_consumers
            }
    except cpu_caps.CapsUnavailable as exc:
        print(f"scale-out figure SKIPPED: {exc}", file=sys.stderr)
        return {"skipped": str(exc)}


def with_consumers(
    db: BenchDatabase, sizes: Sizes, caps: cpu_caps.CpuCaps, n: int
) -> dict[str, Any]:
    with run_topics(db.settings, partitions=PARTITIONS) as settings:
        skus = seed_skus(db, sizes.skus)
        values = allocate_values(settings, skus, sizes.scaleout_commands)
        query = select(func.count()).select_from(allocations).where(allocations.c.sku.in_(skus))

        def applied() -> int:
            with db.engine.connect() as connection:
                return int(connection.execute(query).scalar_one())

        names = [f"consumer-{k}" for k in range(1, n + 1)]
        with processes(db, settings, names, ASSIGNOR) as running:
            for name, service in running.items():
                caps.cap(name, sizes.scaleout_cores)
                caps.enter(name, service.pid)
            print(f"scale-out, {n} consumer(s), CPU caps (cgroup v1):", file=sys.stderr)
            for line in caps.describe():
                print(f"  {line}", file=sys.stderr)
            spread = settled_spread(settings, n)
            print(f"  partitions of {settings.topic_allocate} held: {spread}", file=sys.stderr)
            throttled_before = {name: caps.throttling(name) for name in running}
            producer = fast_producer(settings)
            with cpu.metered(cpu_groups(db, running)) as meter, meter.window() as window:
                started = time.monotonic()
                produce_all(producer, settings.topic_allocate, values)
                wait_until(lambda: applied() >= sizes.scaleout_commands, 600, "every command")
                elapsed = time.monotonic() - started
            throttled = {
                name: throttled_share(throttled_before[name], caps.throttling(name))
                for name in running
            }
        with db.engine.begin() as connection:  # no relay ran: its events go with its topics
            connection.execute(delete(outbox).where(outbox.c.topic.in_(settings.event_topics)))
    result = {
        "cmds_per_s": sizes.scaleout_commands / elapsed,
        "seconds": elapsed,
        "partitions_held": "/".join(map(str, spread)),
        "cores": cores_used(window.used, elapsed),
        "consumers_throttled_pct": sum(throttled.values()) / len(throttled),
        "cpu_method": meter.method,
    }
    print(
        f"  {result['cmds_per_s']:,.0f} commands/s, bound by {bound(result, os.cpu_count() or 1)}",
        file=sys.stderr,
    )
    return result


def cores_used(used: dict[str, float], elapsed: float) -> dict[str, float]:
    """Cores used on average over the window: the consumers together, each server, and
    ``other``, what the rest of the machine used (other people's work on a shared machine)."""
    cores = {name: seconds / elapsed for name, seconds in used.items()}
    ours: dict[str, float] = {
        "consumers": sum(c for name, c in cores.items() if name.startswith("consumer-")),
        **{name: cores[name] for name in ("postgres", "broker", "registry") if name in cores},
    }
    machine = cores.get("machine", 0.0)
    return {**ours, "other": machine - sum(ours.values()) - cores.get("bench", 0.0)}


def settled_spread(settings: Settings, consumers: int, timeout: float = 60) -> list[int]:
    """Wait until ``consumers`` members hold every partition of the allocate topic, each its
    even share; the partitions each holds."""
    last: list[int] = []
    deadline = time.monotonic() + timeout
    admin = admin_client(settings)
    while not even(last, consumers):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the {PARTITIONS} partitions of {settings.topic_allocate} did not spread evenly"
                f" over {consumers} consumer(s) in {timeout:.0f}s (last seen: {last})"
            )
        time.sleep(0.5)
        last = allocate_spread(admin, settings)
    return last


def allocate_spread(admin: AdminClient, settings: Settings) -> list[int]:
    """How many partitions of the allocate topic each member of the group holds, as the
    broker describes the group (the readiness of a consumer counts every command topic)."""
    group = settings.consumer_group
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return []  # not described yet: asked again
    return [
        sum(1 for p in member.assignment.topic_partitions if p.topic == settings.topic_allocate)
        for member in described.members
    ]


def even(spread: list[int], consumers: int) -> bool:
    """Whether ``consumers`` members hold the topic's partitions, each its even share."""
    return len(spread) == consumers and sum(spread) == PARTITIONS and max(spread) - min(spread) <= 1


def throttled_share(earlier: dict[str, int], later: dict[str, int]) -> float:
    """Percent of the CFS periods in between in which the group ran out of its quota."""
    periods = later["nr_periods"] - earlier["nr_periods"]
    return 100 * (later["nr_throttled"] - earlier["nr_throttled"]) / periods if periods else 0.0


def bound(run: dict[str, Any], cpus: int) -> str:
    """What most likely held one N's rate: the consumers' caps, the machine, or waits on the
    servers (PostgreSQL's commits, the broker)."""
    cores, throttled = run["cores"], run["consumers_throttled_pct"]
    if throttled >= 50:
        return f"the consumers' CPU caps (throttled in {throttled:.0f}% of periods)"
    busy = sum(cores.values())
    if busy >= 0.9 * cpus:
        return (
            f"the machine: {busy:.2f} of {cpus} cores busy, {cores.get('other', 0):.2f} of them"
            " other people's work"
        )
    return (
        f"waits on the servers, not CPU (consumers throttled in {throttled:.0f}% of periods,"
        f" PostgreSQL {cores.get('postgres', 0):.2f} cores, broker {cores.get('broker', 0):.2f})"
    )


def scaleout_warnings(summary: dict[str, Any], cpus: int) -> list[str]:
    """One line per N whose rate the caps did not bound: that N says nothing of scale-out."""
    return [
        f"scaleout with {key.removeprefix('consumers_')} consumer(s) was bound by {held}"
        for key, run in summary.items()
        if not (held := bound(run, cpus)).startswith("the consumers' CPU caps")
    ]


def efficiency(rates: dict[int, float]) -> dict[int, float]:
    """Scale-out efficiency X(N) / (N * X(1)) for each N measured (1.0: linear)."""
    one = rates[1]
    return {n: rate / (n * one) for n, rate in sorted(rates.items())}


def scaleout_figures(summary: dict[str, Any]) -> dict[str, float]:
    """The figures of the medians: commands/s, efficiency, and what bounded each N."""
    rates = {int(key.removeprefix("consumers_")): run["cmds_per_s"] for key, run in summary.items()}
    values: dict[str, float] = {}
    efficiencies = efficiency(rates) if 1 in rates else {}
    for n, rate in sorted(rates.items()):
        run = summary[f"consumers_{n}"]
        values[f"scaleout_cmds_per_s_{n}_consumers"] = rate
        if n in efficiencies:
            values[f"scaleout_efficiency_{n}_consumers"] = efficiencies[n]
        values[f"scaleout_throttled_pct_{n}_consumers"] = run["consumers_throttled_pct"]
        for name, cores in run["cores"].items():
            if name != "registry":  # a few thousandths of a core: in the JSON only
                values[f"scaleout_{name}_cores_{n}_consumers"] = cores
    return values
