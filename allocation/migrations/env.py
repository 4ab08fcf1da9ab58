"""Alembic environment: migrates the connection handed over in the config, or DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from allocation.adapters.tables import metadata
from allocation.config import load_settings


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = create_engine(load_settings().sqlalchemy_url)
    with engine.connect() as conn:
        run_migrations(conn)
    engine.dispose()
