"""A benchmark's own world on the running stack: a throwaway database, topics per run."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from allocation.adapters.database import make_engine, migrate
from allocation.adapters.kafka import admin_client
from allocation.adapters.products import start_mappers
from allocation.config import Settings, load_settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from bench.servers import Servers, find_servers


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
    name = f"allocation_bench_{uuid.uuid4().hex[:8]}"
    # No pool: a connection kept from before a database restart would be dead at teardown.
    admin = create_engine(base.sqlalchemy_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base.database_url).set(database=name).render_as_string(hide_password=False)
    settings = base.model_copy(update={"database_url": url})
    engine = make_engine(settings.sqlalchemy_url, pool_size=4)
    migrate(engine)
    start_mappers()
    try:
        yield BenchDatabase(settings, engine, servers)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def run_topics(settings: Settings, partitions: int = 6) -> Iterator[Settings]:
    """Fresh topics and a fresh consumer group for one run; deleted afterwards."""
    ours = settings.with_prefix(f"bench-{uuid.uuid4().hex[:6]}", topic_partitions=partitions)
    create_contract_topics(ours)
    register_contract_schemas(ours)
    try:
        yield ours
    finally:
        admin_client(ours).delete_topics(list(ours.all_topics))
