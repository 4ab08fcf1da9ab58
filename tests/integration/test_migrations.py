import threading
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from allocation.adapters.database import make_engine, migrate
from allocation.adapters.tables import MIGRATION_LOCK, metadata
from allocation.config import Settings


def test_the_migrations_create_exactly_the_tables_the_code_declares(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


@pytest.fixture
def empty_database(settings: Settings) -> Iterator[Engine]:
    """A database of its own with no table at all, dropped afterwards."""
    admin = create_engine(settings.sqlalchemy_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"allocation_migrate_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(settings.sqlalchemy_url).set(database=name)
    engine = make_engine(url.render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


LOCK = {"a": MIGRATION_LOCK[0], "b": MIGRATION_LOCK[1]}


def at_head(engine: Engine) -> bool:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() is not None


def test_migrating_waits_for_the_migration_lock(empty_database: Engine) -> None:
    done = threading.Event()
    holder = empty_database.connect()
    holder.execute(text("SELECT pg_advisory_lock(:a, :b)"), LOCK)
    worker = threading.Thread(target=lambda: (migrate(empty_database), done.set()))
    worker.start()
    try:
        assert not done.wait(1.0)  # another replica migrates: this one waits
        assert not at_head(empty_database)
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:a, :b)"), LOCK)
        holder.close()
    assert done.wait(30.0)
    worker.join(timeout=5)
    assert at_head(empty_database)


def test_two_replicas_migrating_at_once_both_succeed(empty_database: Engine) -> None:
    start, failures = threading.Barrier(2), []

    def replica() -> None:
        start.wait(timeout=10)
        try:
            migrate(empty_database)
        except Exception as exc:  # the race this lock prevents: duplicate DDL
            failures.append(exc)

    replicas = [threading.Thread(target=replica) for _ in range(2)]
    for thread in replicas:
        thread.start()
    for thread in replicas:
        thread.join(timeout=60)
    assert failures == []
    assert at_head(empty_database)
