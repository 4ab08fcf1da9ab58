import threading
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from allocation.adapters.database import make_engine
from allocation.adapters.schema_migrations import SchemaTooOld, downgrade, migrate, require_schema
from allocation.adapters.tables import MIGRATION_LOCK, metadata
from allocation.config import Settings
from allocation.migrations import OLDEST_SCHEMA_REVISION
from tests.conftest import fresh_database


def test_the_migrations_create_exactly_the_tables_the_code_declares(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diff == []


@pytest.fixture
def empty(settings: Settings) -> Iterator[Engine]:
    with fresh_database(settings) as fresh:
        engine = make_engine(fresh.migration_sqlalchemy_url, pool_size=1)  # the owner role
        yield engine
        engine.dispose()


def test_a_database_without_migrations_is_refused_naming_the_upgrade_command(
    empty: Engine,
) -> None:
    with pytest.raises(SchemaTooOld, match=r"run `allocation db upgrade`"):
        require_schema(empty)


def test_a_database_older_than_the_oldest_revision_needed_is_refused(empty: Engine) -> None:
    migrate(empty, "0001")
    require_schema(empty, oldest="0001")
    with pytest.raises(SchemaTooOld, match="at revision 0001, older than 0002"):
        require_schema(empty, oldest="0002")


def test_a_database_newer_than_the_code_is_accepted(empty: Engine) -> None:
    migrate(empty)
    require_schema(empty, oldest=OLDEST_SCHEMA_REVISION)
    with empty.begin() as connection:  # a later release's migration, unknown to this code
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    require_schema(empty)


@pytest.fixture
def empty_database(settings: Settings) -> Iterator[Engine]:
    """A database of its own with no table at all, dropped afterwards."""
    with fresh_database(settings) as fresh:
        engine = make_engine(fresh.migration_sqlalchemy_url)  # the owner role migrates
        yield engine
        engine.dispose()


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


def _lines(engine: Engine) -> list[tuple[str, int, str, int]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT b.reference, a.batch_id, a.orderid, a.qty FROM allocations a "
                    "JOIN batches b ON b.id = a.batch_id ORDER BY a.orderid"
                )
            )
        ]


def test_0014_slims_allocations_and_its_downgrade_restores_them_with_their_lines(
    empty: Engine,
) -> None:
    migrate(empty, "0013")
    with empty.begin() as connection:
        connection.execute(text("INSERT INTO products (sku) VALUES ('lamp')"))
        connection.execute(
            text(
                "INSERT INTO batches (reference, sku, purchased_quantity) VALUES ('b1', 'lamp', 9)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO allocations (batch_id, orderid, sku, qty) "
                "SELECT id, 'o' || n, 'lamp', n FROM batches, generate_series(1, 3) n"
            )
        )
    before = _lines(empty)
    migrate(empty, "0014")
    assert _lines(empty) == before
    with empty.begin() as connection:
        columns = connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'allocations'"
            )
        ).scalars()
        assert "id" not in set(columns)
        # Written as the previous release writes them, without an id.
        connection.execute(
            text(
                "INSERT INTO allocations (batch_id, orderid, sku, qty) "
                "SELECT id, 'o4', 'lamp', 4 FROM batches"
            )
        )
    downgrade(empty, "0013")
    restored = _lines(empty)
    assert [row[2] for row in restored] == ["o1", "o2", "o3", "o4"]
    with empty.connect() as connection:
        ids = connection.execute(text("SELECT id FROM allocations")).scalars().all()
        assert len(set(ids)) == 4
        constraints = connection.execute(
            text("SELECT conname FROM pg_constraint WHERE conrelid = 'allocations'::regclass")
        ).scalars()
        assert {"allocations_pkey", "allocations_batch_id_fkey"} <= set(constraints)
    migrate(empty)
    assert [row[2] for row in _lines(empty)] == ["o1", "o2", "o3", "o4"]


def test_0015_adds_the_version_check_that_fails_as_a_conflict_and_its_downgrade_drops_it(
    empty: Engine,
) -> None:
    migrate(empty, "0015")
    with empty.connect() as connection:
        connection.execute(text("SELECT products_unmoved(2, 2)"))  # every row still had it
        with pytest.raises(DBAPIError) as refused:
            connection.execute(text("SELECT products_unmoved(1, 3)"))
        assert refused.value.orig.pgcode == "40001"  # type: ignore[union-attr]
        assert "2 of 3 products changed since they were read" in str(refused.value)
    downgrade(empty, "0014")
    with empty.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'products_unmoved'")
            ).scalar_one()
            == 0
        )
    migrate(empty)
