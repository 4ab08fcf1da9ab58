"""Transactions whose BEGIN and COMMIT travel with their statements: two round trips fewer.

psycopg2 opens a transaction with a ``BEGIN`` of its own, sent and answered before the first
statement, and ends it with a ``COMMIT`` of its own: two of the four round trips a group of
commands made (``BEGIN``, the lookup, the script of writes, ``COMMIT``), 0.15 to 0.19 ms
each on this project's machine. The service's engines (``database.make_engine``) therefore
keep their connections in autocommit mode at the driver, and open and end transactions in
their own statements:

- ``BEGIN ISOLATION LEVEL REPEATABLE READ`` goes in front of the first statement a
  connection sends outside a transaction: one multi-statement string, one round trip.
  PostgreSQL says in every answer whether a transaction is open, and libpq keeps what it
  said (``transaction_status``), so asking costs nothing.
- The unit of work ends its script of writes with ``COMMIT`` (``batched_writes``). What the
  code used to check between the two, the products' versions, the server checks now
  (``products_unmoved``, migration 0015).
- Any other commit or rollback through SQLAlchemy sends ``COMMIT`` or ``ROLLBACK`` when a
  transaction is open, and nothing when none is (``FoldedDialect``): that includes the pool's
  rollback of a connection handed back, so no transaction outlives its user.

A connection asked for autocommit (``execution_options(isolation_level="AUTOCOMMIT")``,
``held.py``) sends its statements as they are: each commits alone, as before.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import extensions
from sqlalchemy import Engine, event
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.engine import URL, Connection, make_url

ISOLATION = "REPEATABLE READ"
"""The isolation of every transaction of the service's engines."""

BEGIN = f"BEGIN ISOLATION LEVEL {ISOLATION}"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"
DRIVER = "postgresql+allocation_folded"
_IDLE = int(extensions.TRANSACTION_STATUS_IDLE)  # libpq: no transaction open


class FoldedDialect(PGDialect_psycopg2):
    """psycopg2, its connections in autocommit: a commit or rollback is sent only when a
    transaction is open (one opened by ``BEGIN`` in front of a statement)."""

    supports_statement_cache = True

    def do_commit(self, dbapi_connection: Any) -> None:
        # An open transaction that failed answers COMMIT with ROLLBACK, as psycopg2's did.
        if _status(dbapi_connection) != _IDLE:
            _send(dbapi_connection, COMMIT)

    def do_rollback(self, dbapi_connection: Any) -> None:
        if _status(dbapi_connection) != _IDLE:
            _send(dbapi_connection, ROLLBACK)


registry.register(DRIVER.replace("+", "."), __name__, FoldedDialect.__name__)


def folded_url(url: str | URL) -> URL:
    """``url`` on this module's dialect (the same psycopg2 underneath)."""
    return make_url(url).set(drivername=DRIVER)


def folds(connection: Connection) -> bool:
    """Whether ``connection`` opens and ends its own transactions (not one asked for autocommit)."""
    return isinstance(connection.dialect, FoldedDialect) and not _autocommit(connection)


def in_transaction(connection: Connection) -> bool:
    """Whether the server holds a transaction open on this connection (as it last said)."""
    return _status(connection.connection.dbapi_connection) != _IDLE


def fold_transactions(engine: Engine) -> None:
    """BEGIN in front of the first statement of each transaction on ``engine``."""
    event.listen(engine, "before_cursor_execute", _opening, retval=True)


def _autocommit(connection: Connection) -> bool:
    return connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _status(connection: Any) -> int:
    return int(_psycopg2(connection).info.transaction_status)


def _send(connection: Any, statement: str) -> None:
    with _psycopg2(connection).cursor() as cursor:
        cursor.execute(statement)


def _psycopg2(connection: Any) -> Any:
    """The psycopg2 connection itself: SQLAlchemy hands the dialect its pool's proxy of it."""
    return getattr(connection, "dbapi_connection", connection)


def _opening(
    connection: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    if _status(cursor.connection) != _IDLE or _autocommit(connection):
        return statement, parameters
    if executemany:  # each parameter set is a statement of its own: BEGIN goes alone, first
        cursor.execute(BEGIN)
        return statement, parameters
    return f"{BEGIN};\n{statement}", parameters
