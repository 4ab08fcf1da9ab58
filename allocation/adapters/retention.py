"""Pruning by age, for the tables that would otherwise grow without bound."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Column, Connection, Table, delete, func, select


def delete_older_than(
    connection: Connection,
    table: Table,
    key: Column[object],
    stamp: Column[object],
    older_than: timedelta,
    limit: int = 10_000,
) -> int:
    """Delete up to ``limit`` rows whose ``stamp`` is older than ``older_than``; how many went.

    The limit keeps each delete, and the locks it holds, short; a caller that
    finds the limit reached calls again.
    """
    doomed = select(key).where(stamp < func.now() - older_than).limit(limit).scalar_subquery()
    return int(connection.execute(delete(table).where(key.in_(doomed))).rowcount)
