"""A benchmark's own world on the running stack: a throwaway database, topics per run."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from allocation.adapters.database import make_engine
from allocation.adapters.products import start_mappers
from allocation.bootstrap import upgrade_schema
from allocation.config import Settings, load_settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from bench.servers import Servers, find_servers
from testkit.databases import throwaway_database
from testkit.topics import drop_topics


@dataclass
class BenchDatabase:
    settings: Settings
    engine: Engine
    servers: Servers | None  # None: the servers' CPU is not measured


@contextmanager
def bench_database() -> Iterator[BenchDatabase]:
    """A migrated database of its own, dropped afterwards; the stack's server processes."""
    base = load_settings()
    try:
        servers: Servers | None = find_servers()
    except LookupError as missing:
        print(f"the servers' CPU will not be measured: {missing}", file=sys.stderr)
        servers = None
    with throwaway_database(base, prefix="allocation_bench") as settings:
        upgrade_schema(settings)  # as the owner role; the service's role is granted its share
        engine = make_engine(settings.sqlalchemy_url, pool_size=4)
        start_mappers()
        try:
            yield BenchDatabase(settings, engine, servers)
        finally:
            engine.dispose()


@contextmanager
def run_topics(settings: Settings, partitions: int = 6) -> Iterator[Settings]:
    """Fresh topics and a fresh consumer group for one run; deleted afterwards."""
    ours = settings.with_prefix(f"bench-{uuid.uuid4().hex[:6]}", topic_partitions=partitions)
    create_contract_topics(ours)
    register_contract_schemas(ours)
    try:
        yield ours
    finally:
        drop_topics(ours)
