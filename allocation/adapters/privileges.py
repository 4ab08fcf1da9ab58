"""What the service's role may do in its database: granted by the owner, after each migration.

Least privilege: the database and every table belong to the owner role that runs the
migrations (MIGRATION_DATABASE_URL); the service's role (DATABASE_URL) owns nothing and
gets only what it needs: CONNECT, USAGE on the schema, SELECT, INSERT, UPDATE and DELETE
on the tables (SELECT alone on ``alembic_version``), USAGE on the sequences. Default
privileges give it the same on tables a later migration creates, whoever applies it as
the owner. It cannot create, alter or drop a table.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

SCHEMA = "public"

# Said wherever a refused permission surfaces (SQLSTATE 42501): what the operator does.
PRIVILEGE_ADVICE = (
    "the service's role (DATABASE_URL) lacks a privilege: run `allocation db upgrade` with"
    " MIGRATION_DATABASE_URL set to the database owner's URL; it grants the service's role"
    " what it needs"
)


class UnknownRole(Exception):
    """The service's role does not exist on the server the migrations ran on."""


def grant_service_role(connection: Connection, role: str) -> None:
    """Give ``role`` what the service needs and no more (nothing when it is the current user).

    Idempotent; run in the migrating transaction, as the owner of the tables.
    """
    current = connection.execute(text("SELECT current_user")).scalar_one()
    if role == current:
        return
    exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    if exists.first() is None:
        raise UnknownRole(
            f"the service's role {role!r} (DATABASE_URL) does not exist on the database"
            " server of MIGRATION_DATABASE_URL; create it (LOGIN, no CREATEDB) first"
        )
    quote = connection.dialect.identifier_preparer.quote
    grantee, owner, schema = quote(role), quote(current), quote(SCHEMA)
    database = quote(connection.execute(text("SELECT current_database()")).scalar_one())
    dml = "SELECT, INSERT, UPDATE, DELETE"
    for statement in (
        f"GRANT CONNECT ON DATABASE {database} TO {grantee}",
        # Before PostgreSQL 15 every role may create tables in public: not the service's.
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {schema} TO {grantee}",
        f"GRANT {dml} ON ALL TABLES IN SCHEMA {schema} TO {grantee}",
        f"REVOKE INSERT, UPDATE, DELETE ON {schema}.alembic_version FROM {grantee}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        f" GRANT {dml} ON TABLES TO {grantee}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        f" GRANT USAGE ON SEQUENCES TO {grantee}",
    ):
        connection.execute(text(statement))
