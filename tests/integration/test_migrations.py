from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from allocation.adapters.database import SchemaTooOld, make_engine, migrate, require_schema
from allocation.adapters.tables import metadata
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
        engine = make_engine(fresh.sqlalchemy_url, pool_size=1)
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
