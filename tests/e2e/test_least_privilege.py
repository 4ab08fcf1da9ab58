"""Least privilege on the real PostgreSQL: the service's role owns nothing and creates nothing.

The owner role (MIGRATION_DATABASE_URL) owns the database and runs the migrations; the
service's role (DATABASE_URL) is granted only the rows' privileges, by the migration step.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from allocation.adapters.database import make_engine, session_factory
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.bootstrap import event_routes
from allocation.config import Settings
from allocation.domain import commands
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from testkit.processes import service_env
from tests.conftest import fresh_database, random_batchref, random_orderid, random_sku
from tests.containers import servers_mode


def allocation(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allocation.entrypoints.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def role(url: str) -> str:
    return str(make_url(url).username)


@pytest.fixture
def fresh(settings: Settings) -> Iterator[Settings]:
    with fresh_database(settings) as database:
        yield database


def test_the_service_role_owns_nothing_and_may_not_create_databases(
    engine: Engine, settings: Settings
) -> None:
    assert role(settings.database_url) != role(settings.migration_sqlalchemy_url)
    with engine.connect() as connection:
        me = connection.execute(
            text("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = user")
        ).one()
        owner = connection.execute(
            text(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            )
        ).scalar_one()
        owned = connection.execute(
            text(
                "SELECT count(*) FROM pg_class WHERE relpersistence <> 't'"  # its own temp tables
                " AND relowner = (SELECT oid FROM pg_roles WHERE rolname = user)"
            )
        ).scalar_one()
    assert tuple(me) == (False, False, False)
    assert owner == role(settings.migration_sqlalchemy_url)
    assert owned == 0
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with pytest.raises(ProgrammingError) as refused, autocommit.connect() as connection:
        connection.execute(text('CREATE DATABASE "allocation_not_allowed"'))
    assert refused.value.orig.pgcode == "42501"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE sneaky (id int)",
        "ALTER TABLE products ADD COLUMN sneaky int",
        "DROP TABLE outbox",
        "TRUNCATE inbox",
        "UPDATE alembic_version SET version_num = 'x'",
    ],
)
def test_the_service_role_may_not_change_the_schema(engine: Engine, statement: str) -> None:
    with pytest.raises(ProgrammingError) as refused, engine.begin() as connection:
        connection.execute(text(statement))
    assert refused.value.orig.pgcode == "42501"  # type: ignore[union-attr]


def test_db_upgrade_migrates_as_the_owner_and_the_service_role_then_works(
    fresh: Settings,
) -> None:
    upgraded = allocation(service_env(fresh), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    owner = make_engine(fresh.migration_sqlalchemy_url, pool_size=1)
    try:
        with owner.begin() as connection:
            tables = connection.execute(
                text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            assert list(tables) == [role(fresh.migration_sqlalchemy_url)]
            # a later migration's table: the default privileges grant the service its rows
            connection.execute(text("CREATE TABLE later_migration (id int)"))
    finally:
        owner.dispose()

    service = make_engine(fresh.sqlalchemy_url, pool_size=2)
    try:
        routes = event_routes(fresh)
        sessions = session_factory(service)
        bus = MessageBus(
            lambda: SqlAlchemyUnitOfWork(sessions, routes), COMMAND_HANDLERS, EVENT_HANDLERS
        )
        sku, orderid = random_sku(), random_orderid()
        bus.handle(commands.CreateBatch(random_batchref(), sku, 10, None))
        bus.handle(commands.Allocate(orderid, sku, 3))
        with service.begin() as connection:
            query = text("SELECT count(*) FROM allocations_view WHERE orderid = :o")
            assert connection.execute(query, {"o": orderid}).scalar_one() == 1
            connection.execute(text("INSERT INTO later_migration VALUES (1)"))
    finally:
        service.dispose()


def test_db_upgrade_as_the_service_role_says_to_set_the_migration_url(fresh: Settings) -> None:
    env = service_env(fresh)
    env.pop("MIGRATION_DATABASE_URL", None)
    env.pop("MIGRATION_DATABASE_URL_FILE", None)

    refused = allocation(env, "db", "upgrade")

    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, refused.stderr
    assert "permission denied" in lines[0]
    assert "MIGRATION_DATABASE_URL" in lines[0]


def test_the_stacks_socket_directory_is_not_world_writable(settings: Settings) -> None:
    if servers_mode() != "native":
        pytest.skip("the socket directory of the native stack only")
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(
        [
            "bash",
            str(root / "stack" / "stack.sh"),
            "psql",
            "-At",
            "-c",
            "SHOW unix_socket_directories",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    for directory in shown.stdout.strip().split(","):
        mode = stat.S_IMODE(os.stat(directory.strip()).st_mode)
        assert mode & (stat.S_IWOTH | stat.S_IROTH | stat.S_IXOTH) == 0, oct(mode)
        assert mode & stat.S_IWGRP == 0, oct(mode)


def test_db_upgrade_names_a_service_role_that_does_not_exist(fresh: Settings) -> None:
    absent = make_url(fresh.database_url).set(username="no_such_service_role", password="x")
    env = service_env(fresh, DATABASE_URL=absent.render_as_string(hide_password=False))

    refused = allocation(env, "db", "upgrade")

    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "'no_such_service_role' (DATABASE_URL) does not exist" in refused.stderr
