"""The schema's migrations: Alembic's, shipped in the package, run under a lock; and the
check that a database's schema is recent enough for this code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import Engine, inspect, text

from allocation import migrations
from allocation.adapters.privileges import grant_service_role
from allocation.adapters.tables import MIGRATION_LOCK


class SchemaTooOld(Exception):
    """The database's schema predates what this code needs: migrate it first."""


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def migrate(engine: Engine, revision: str = "head", grant_to: str | None = None) -> None:
    """Bring the schema to ``revision`` with the Alembic migrations shipped in the package.

    ``engine`` connects as the database's owner; ``grant_to``, the service's role, then
    gets the privileges it needs in the same transaction (``privileges``).

    Under a session-level advisory lock (MIGRATION_LOCK), taken before the
    migrating transaction begins: a second replica migrating at the same time
    waits, then reads the version the first committed and has nothing to do,
    instead of racing it through the same DDL.
    """
    config = _alembic_config()
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:a, :b)"), _lock_keys())
        connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if grant_to is not None:
                    grant_service_role(connection, grant_to)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:a, :b)"), _lock_keys())
            connection.commit()


def downgrade(engine: Engine, revision: str) -> None:
    """Bring the schema back down to ``revision`` (the migrations' round-trip tests; no command
    offers it: a downgrade drops what newer rows hold)."""
    config = _alembic_config()
    with engine.connect() as connection, connection.begin():
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _lock_keys() -> dict[str, int]:
    return {"a": MIGRATION_LOCK[0], "b": MIGRATION_LOCK[1]}


def require_schema(engine: Engine, oldest: str = migrations.OLDEST_SCHEMA_REVISION) -> None:
    """SchemaTooOld unless the database is at ``oldest`` or a later revision.

    A revision these migrations do not know is a newer one (a later release
    migrated first, as in a rolling deploy): accepted.
    """
    script = ScriptDirectory.from_config(_alembic_config())
    # Read directly: alembic's MigrationContext logs two lines even for a question.
    with engine.connect() as connection:
        current: list[str] = []
        if inspect(connection).has_table("alembic_version"):
            query = text("SELECT version_num FROM alembic_version")
            current = list(connection.execute(query).scalars())
    advice = "run `allocation db upgrade`"
    if not current:
        raise SchemaTooOld(f"the database has no schema (no migration applied); {advice}")
    for head in current:
        try:
            reached = {r.revision for r in script.iterate_revisions(head, "base")}
        except RevisionError:
            continue
        if oldest not in reached:
            raise SchemaTooOld(
                f"the database schema is at revision {head}, older than {oldest}, the oldest"
                f" this code runs on; {advice}"
            )
