"""A connection held out of the pool, in autocommit, for a loop of single statements.

The relay reads its next chunk and marks the last one published hundreds of times a second
when busy, each a statement that stands alone. Through the pool each cost a checkout (its
events and its reset on return), a ``BEGIN`` and a ``COMMIT`` or ``ROLLBACK`` beside the
statement: three round trips where one does, and about a quarter of the relay's interpreter
time. A held connection in autocommit sends the statement alone, which PostgreSQL commits
by itself. Anything that must be atomic across statements still takes a transaction from
the pool.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine


class HeldConnection:
    """One connection taken on first use and kept; ``drop`` it after any failure (it may be
    dead, or mid-statement), and the next use connects anew."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def get(self) -> Connection:
        if self._connection is None:
            connection = self._engine.connect()
            self._connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.invalidated:
                return
            connection.invalidate()  # closed, not pooled: its state after a failure is unknown
        finally:
            connection.close()
