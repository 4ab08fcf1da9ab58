"""PostgreSQL: the engine, the SQLAlchemy unit of work, and the migrations."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from allocation import migrations
from allocation.adapters.batched_writes import BatchedWrites
from allocation.adapters.folded import fold_transactions, folded_url
from allocation.adapters.inbox import SqlInbox
from allocation.adapters.offsets import SqlOffsets
from allocation.adapters.outbox import SchemaVersions, SqlOutbox
from allocation.adapters.prefetch import prefetch_rows
from allocation.adapters.prepared import plan_generically
from allocation.adapters.privileges import grant_service_role
from allocation.adapters.products import SqlProductRepository
from allocation.adapters.responses import SqlResponses
from allocation.adapters.tables import MIGRATION_LOCK
from allocation.adapters.views import SqlAllocationsView
from allocation.adapters.waiting import SqlWaiting
from allocation.service_layer.unit_of_work import (
    AbstractUnitOfWork,
    ConcurrencyConflict,
    EventRoutes,
    Wanted,
)

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


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    """One SQLAlchemy session, hence one PostgreSQL transaction, per unit of work."""

    products: SqlProductRepository
    inbox: SqlInbox
    views: SqlAllocationsView
    responses: SqlResponses
    offsets: SqlOffsets
    waiting: SqlWaiting

    def __init__(
        self,
        session_factory: Callable[[], Session],
        routes: EventRoutes,
        schema_versions: SchemaVersions | None = None,
    ) -> None:
        super().__init__(routes)
        self._session_factory = session_factory
        self._schema_versions = schema_versions

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self._session_factory()
        self._writes = BatchedWrites(self.session)
        self.products = SqlProductRepository(self.session)
        self.inbox = SqlInbox(self.session)
        self.outbox = SqlOutbox(self.session, self._schema_versions)
        self.views = SqlAllocationsView(self.session)
        self.responses = SqlResponses(self.session)
        self.offsets = SqlOffsets(self.session)
        self.waiting = SqlWaiting(self.session)
        super().__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self.session.close()
        if exc is not None and is_conflict(exc):
            raise ConcurrencyConflict(str(exc).splitlines()[0]) from exc

    def prefetch(self, wanted: Wanted) -> None:
        """One query: the products with their batches, and the rest (``prefetch``)."""
        prefetch_rows(self.session, self.products, self.inbox, self.waiting, wanted)

    def _flush(self) -> None:
        # From here to the commit, the rows' writes go out together (``batched_writes``).
        self._writes.deferring = True
        self.products.flush()
        self.inbox.flush()
        self.views.flush()
        self.responses.flush()

    def _commit(self) -> None:
        self._writes.send(commit=True)  # with the COMMIT, on the session's folded connection
        self.session.commit()
        self._writes.deferring = False

    def rollback(self) -> None:
        self._writes.discard()
        self.session.rollback()


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
