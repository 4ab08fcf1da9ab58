"""PostgreSQL: the engine, the SQLAlchemy unit of work, and which errors are worth a retry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from allocation import migrations
from allocation.adapters import orm
from allocation.adapters.inbox import SqlInbox
from allocation.adapters.outbox import SqlOutbox
from allocation.adapters.repository import SqlAlchemyRepository
from allocation.adapters.views import SqlAllocationsView
from allocation.domain import model
from allocation.domain.commands import Allocate, Command, CreateBatch
from allocation.domain.errors import DomainError
from allocation.service_layer.unit_of_work import (
    AbstractUnitOfWork,
    ConcurrencyConflict,
    Envelope,
    EventRoutes,
)

# serialization_failure, deadlock_detected, lock_not_available, unique_violation.
# A unique violation here means a concurrent writer created the same row first;
# on retry the handler sees that row and answers as the domain says.
_CONFLICT_CODES = frozenset({"40001", "40P01", "55P03", "23505"})


def make_engine(url: str, pool_size: int = 5) -> Engine:
    engine = create_engine(
        url,
        isolation_level="REPEATABLE READ",
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    event.listen(engine, "handle_error", _read_only_is_a_disconnect)
    return engine


def _read_only_is_a_disconnect(context: ExceptionContext) -> None:
    """read_only_sql_transaction: this connection reached a server that is no primary (any more).

    During a failover a demoted primary may answer for a moment. Counting it as a disconnect
    drops the pool, so the retry connects anew and target_session_attrs finds the new primary.
    """
    if getattr(context.original_exception, "pgcode", None) == "25006":
        context.is_disconnect = True


def is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, StaleDataError):
        return True
    return (
        isinstance(exc, sa_exc.DBAPIError) and getattr(exc.orig, "pgcode", None) in _CONFLICT_CODES
    )


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or went away: wait and try again."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return False


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    products: SqlAlchemyRepository
    inbox: SqlInbox
    views: SqlAllocationsView

    def __init__(self, session_factory: Callable[[], Session], routes: EventRoutes) -> None:
        super().__init__(routes)
        self._session_factory = session_factory

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self._session_factory()
        self.products = SqlAlchemyRepository(self.session)
        self.inbox = SqlInbox(self.session)
        self.outbox = SqlOutbox(self.session)
        self.views = SqlAllocationsView(self.session)
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

    def prefetch(self, commands: Sequence[Command], envelopes: Sequence[Envelope | None]) -> None:
        # Commands are not validated yet: values the domain will reject are not looked up.
        skus = [c.sku for c in commands if isinstance(c, Allocate | CreateBatch) and _valid(c.sku)]
        self.products.prefetch(skus)
        lines = [
            (c.sku, c.orderid)
            for c in commands
            if isinstance(c, Allocate) and _valid(c.sku) and _valid(c.orderid)
        ]
        orm.store_for(self.session).prefetch(lines)
        self.inbox.prefetch(e.message_id for e in envelopes if e is not None and e.deduplicate)

    def _flush(self) -> None:
        self.products.flush()
        self.inbox.flush()
        self.views.flush()

    def _commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def _valid(identifier: object) -> bool:
    try:
        model.require_text("identifier", identifier)
    except DomainError:
        return False
    return True


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the Alembic migrations shipped in the package."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
