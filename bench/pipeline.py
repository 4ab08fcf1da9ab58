"""The service's processes a figure runs, and the groups its CPU is metered in: the stack's
servers and those processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from confluent_kafka.admin import AdminClient

from allocation.adapters.security import kafka_client_security
from allocation.config import Settings
from bench import cpu
from bench.environment import BenchDatabase
from bench.servers import Servers, find_servers
from testkit.processes import Service, service_env, wait_for_leader, wait_until, wait_until_ready

LOGS = Path(__file__).parent / "results" / "tmp"


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
                wait_until(partial(baseline_assigned, settings, service), 60, "the baseline")
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
        groups[name] = partial(list, (service.pid,))
    return groups
