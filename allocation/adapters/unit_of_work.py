"""The SQLAlchemy unit of work: one session, hence one PostgreSQL transaction, per unit."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import BatchedWrites
from allocation.adapters.database import is_conflict
from allocation.adapters.inbox import SqlInbox
from allocation.adapters.offsets import SqlOffsets
from allocation.adapters.outbox import SchemaVersions, SqlOutbox
from allocation.adapters.prefetch import prefetch_rows
from allocation.adapters.products import SqlProductRepository
from allocation.adapters.responses import SqlResponses
from allocation.adapters.views import SqlAllocationsView
from allocation.adapters.waiting import SqlWaiting
from allocation.service_layer.unit_of_work import (
    AbstractUnitOfWork,
    ConcurrencyConflict,
    EventRoutes,
    Wanted,
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
