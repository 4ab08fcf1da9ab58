"""A benchmark's own world on the running stack: a throwaway database, topics per run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from allocation.adapters import orm
from allocation.adapters.avro import registry_client
from allocation.adapters.database import make_engine, migrate
from allocation.adapters.kafka import DLQ_MAX_BYTES, admin_client, create_topics
from allocation.adapters.schemas import register_all
from allocation.adapters.wire import load_schema, topic_records
from allocation.config import Settings, load_settings

TOPIC_FIELDS = (
    "topic_add_batch",
    "topic_allocate",
    "topic_batch_quantity",
    "topic_line_allocated",
    "topic_line_deallocated",
    "topic_out_of_stock",
    "topic_dlq",
)


@dataclass
class BenchDatabase:
    settings: Settings
    engine: Engine


@contextmanager
def bench_database() -> Iterator[BenchDatabase]:
    """A migrated database of its own, dropped afterwards."""
    base = load_settings()
    name = f"allocation_bench_{uuid.uuid4().hex[:8]}"
    # No pool: a connection kept from before a database restart would be dead at teardown.
    admin = create_engine(base.sqlalchemy_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base.database_url).set(database=name).render_as_string(hide_password=False)
    settings = base.model_copy(update={"database_url": url})
    engine = make_engine(settings.sqlalchemy_url, pool_size=4)
    migrate(engine)
    orm.start_mappers()
    try:
        yield BenchDatabase(settings, engine)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def run_topics(settings: Settings, partitions: int = 6) -> Iterator[Settings]:
    """Fresh topics and a fresh consumer group for one run; deleted afterwards."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    update: dict[str, object] = {f: f"{prefix}-{getattr(settings, f)}" for f in TOPIC_FIELDS}
    update |= {"consumer_group": f"{prefix}-allocation", "topic_partitions": partitions}
    ours = settings.model_copy(update=update)
    create_topics(
        ours,
        ours.all_topics,
        partitions,
        configs={ours.topic_dlq: {"max.message.bytes": str(DLQ_MAX_BYTES)}},
    )
    schemas = {t: load_schema(r) for t, r in topic_records(ours).items()}
    register_all(registry_client(ours.schema_registry_url), schemas)
    try:
        yield ours
    finally:
        admin_client(ours).delete_topics(list(ours.all_topics))
