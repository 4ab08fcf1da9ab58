"""Throwaway databases for tests and benchmarks, made by the owner role, never by the service's.

The service's role (DATABASE_URL) owns nothing and may not create databases; the owner role
(MIGRATION_DATABASE_URL, the stack's ``allocation_owner``) creates the database, so it owns
it and its schema, and migrating there grants the service's role what it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from allocation.config import Settings


def _on(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@contextmanager
def throwaway_database(base: Settings, prefix: str = "allocation_test") -> Iterator[Settings]:
    """``base`` with both URLs on a new, empty database of the owner's, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    # No pool: a connection kept from before a database restart would be dead at teardown.
    admin = create_engine(
        base.migration_sqlalchemy_url, isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except ProgrammingError as exc:
        admin.dispose()
        role = make_url(base.migration_sqlalchemy_url).username
        raise PermissionError(
            f"the role {role!r} may not create databases; set MIGRATION_DATABASE_URL to the"
            " owner role's URL (`bash stack/stack.sh up` prints it)"
        ) from exc
    except BaseException:
        admin.dispose()
        raise
    owner = base.migration_database_url or base.database_url
    try:
        yield base.model_copy(
            update={
                "database_url": _on(base.database_url, name),
                "migration_database_url": _on(owner, name),
            }
        )
    finally:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except ProgrammingError:
            # FORCE refuses to terminate a backend of a role the owner has no privileges of,
            # and an autovacuum worker busy in a database just written to a lot is of no role;
            # a plain DROP makes autovacuum let go (waiting up to 5 s) and fails only while a
            # session is still connected.
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        finally:
            admin.dispose()
