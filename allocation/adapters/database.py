"""PostgreSQL: the engine and its pool, and how its errors read (a conflict, a read-only server).

The unit of work on it is ``unit_of_work``; the schema's migrations are ``schema_migrations``.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from allocation.adapters.folded import fold_transactions, folded_url
from allocation.adapters.prepared import plan_generically

# serialization_failure, deadlock_detected, lock_not_available, unique_violation.
# A unique violation here means a concurrent writer created the same row first;
# on retry the handler sees that row and answers as the domain says.
_CONFLICT_CODES = frozenset({"40001", "40P01", "55P03", "23505"})


PING_AFTER_IDLE_S = 1.0
"""A pooled connection idle for longer is asked whether it still works before it is used."""


def make_engine(
    url: str,
    pool_size: int = 5,
    pre_ping: bool = True,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
) -> Engine:
    """An engine whose transactions are REPEATABLE READ, the isolation the service relies on.

    ``pre_ping`` asks a connection taken from the pool whether it still works, when it sat
    idle for ``ping_after_idle_s`` or more: a connection PostgreSQL dropped while it slept
    (a restart, an idle timeout) is replaced before a request fails on it. SQLAlchemy's own
    pre-ping pings at every checkout, two round trips per transaction (the ping and its
    autocommit switch); a connection in steady use goes without. The consumer and the relay go
    without any: they retry a transaction that failed on a dropped connection anyway
    (``faults.is_transient``), and a disconnect empties the pool, so the retry connects anew.
    """
    engine = create_engine(
        folded_url(url),  # psycopg2, its transactions' BEGIN and COMMIT sent with statements
        isolation_level="AUTOCOMMIT",  # at the driver: each transaction is REPEATABLE READ
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    event.listen(engine, "handle_error", _read_only_is_a_disconnect)
    plan_generically(engine)
    fold_transactions(engine)
    if pre_ping:
        _ping_when_idle(engine, ping_after_idle_s)
    return engine


# A transaction of the service's never waits on anything but PostgreSQL between statements.
STALLED_TRANSACTION_S = 10


def end_stalled_transactions(engine: Engine, after_s: float = STALLED_TRANSACTION_S) -> None:
    """The server ends a transaction of ``engine`` left open and silent for ``after_s``.

    A process cut off from PostgreSQL in the middle of a transaction (a half-open connection:
    paused, partitioned, its host frozen) leaves that transaction's row locks behind until the
    connection comes back or TCP gives up. Whoever takes over its work waits on them: a relay
    standby on the rows its fenced leader was marking (the half-open scenario waited 30 s
    where the takeover took 9), a consumer given the partitions of one cut off mid-poll on that
    poll's products. The service's transactions never sit silent: each reads, writes and ends,
    with no broker call or sleep inside.
    """

    def bounded(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET idle_in_transaction_session_timeout = %s", (int(after_s * 1000),))
        finally:
            cursor.close()
        dbapi_connection.commit()  # before any transaction of the service's: it stays set

    event.listen(engine, "connect", bounded)


def _ping_when_idle(engine: Engine, after_s: float) -> None:
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < after_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            # The pool drops this connection and checks out another (a new one, if need be).
            raise sa_exc.DisconnectionError(
                f"a pooled connection no longer works: {error}"
            ) from error

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)


def _read_only_is_a_disconnect(context: ExceptionContext) -> None:
    """read_only_sql_transaction: this connection reached a server that is no primary (any more).

    During a failover a demoted primary may answer for a moment. Counting it as a disconnect
    drops the pool, so the retry connects anew and target_session_attrs finds the new primary.
    """
    if getattr(context.original_exception, "pgcode", None) == "25006":
        context.is_disconnect = True


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the bus returns results)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_conflict(exc: BaseException) -> bool:
    """Another transaction won a race for the same rows: the whole unit may be retried."""
    if isinstance(exc, StaleDataError):
        return True
    return (
        isinstance(exc, sa_exc.DBAPIError) and getattr(exc.orig, "pgcode", None) in _CONFLICT_CODES
    )
