"""The last writes of a unit of work, sent to PostgreSQL in one round trip, with its COMMIT.

A unit of work that commits writes its staged rows statement by statement: the
allocations, the batches' totals, the read model, the inbox ids, the outbox's
per-key locks and its rows. Nobody reads what those statements return, so while
``deferring`` (from the flush at commit to the commit) they are kept, rendered
the way psycopg2 renders any statement (it interpolates parameters on the client),
and sent together as one multi-statement string: one round trip instead of six,
in the transaction and order they would have run in. On a connection that opens and
ends its own transactions (``folded``) the string ends with the ``COMMIT``. An error in
any of them is the batch's, raised as SQLAlchemy raises a failed statement; PostgreSQL
runs nothing after it (the ``COMMIT`` included), and the unit of work rolls back.

A statement whose result is read runs at once, and sends what was kept before it,
so the order never changes. The products' version check (``write_then``) goes last
among the writes: the server judges it and fails the transaction when a version moved,
and what depends on its success runs once the script has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ClauseElement, Executable, TextClause, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from allocation.adapters.folded import COMMIT, folds, in_transaction
from allocation.adapters.pg_arrays import with_literal_arrays
from allocation.adapters.prepared import Prepared, prepare, run

_KEY = "allocation.batched_writes"
Statement = Executable | Prepared
Then = Callable[[], None]
_COMMIT = text(COMMIT)


class BatchedWrites:
    """Per session: statements kept while ``deferring``, sent by ``send``."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._kept: list[tuple[Statement, Any]] = []
        self._last: tuple[Statement, Any, Then] | None = None
        self.deferring = False
        session.info[_KEY] = self

    def execute(self, statement: Statement, params: Any = None) -> None:
        if self.deferring:
            self._kept.append((statement, params))
        else:
            _execute(self._session.connection(), statement, params)

    def execute_then(self, statement: Statement, params: Any, then: Then) -> None:
        if not self.deferring:
            _execute(self._session.connection(), statement, params)
            then()
        elif self._last is not None:
            raise RuntimeError("one last write per batch")
        else:
            self._last = (statement, params, then)

    def discard(self) -> None:
        """Forget what was kept (the transaction rolls back) and write at once again."""
        self._kept, self._last = [], None
        self.deferring = False

    def send(self, commit: bool = False) -> None:
        """Run what was kept, in order, in one round trip, the last write last; with
        ``commit``, on a folded connection, the ``COMMIT`` after them."""
        kept, self._kept = self._kept, []
        last, self._last = self._last, None
        if last is not None:
            kept.append(last[:2])
        if commit:
            commit = self._ends_here()
        if not kept and not commit:
            return
        connection = self._session.connection()
        if commit and (kept or in_transaction(connection)):
            kept.append((_COMMIT, None))
        if len(kept) == 1:
            _execute(connection, *kept[0])
        elif kept:
            self._send_script(connection, kept)
        if last is not None:
            last[2]()

    def _ends_here(self) -> bool:
        """Whether the transaction may end with the writes: a folded connection, and nothing
        left for the ORM to write at SQLAlchemy's commit (which would then send it, and end
        the transaction itself)."""
        session = self._session
        if session.new or session.dirty or session.deleted:
            return False
        return folds(session.connection())

    def _send_script(self, connection: Connection, kept: list[tuple[Statement, Any]]) -> Any:
        for statement, _ in kept:
            if isinstance(statement, Prepared):  # on its own, so a failed script leaves no doubt
                prepare(connection, statement)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            script = b";\n".join(_rendered(connection, cursor, s, p) for s, p in kept)
        finally:
            cursor.close()
        # no_parameters: the script is final; psycopg2 must not look for %-placeholders in it.
        return connection.exec_driver_sql(
            script.decode("utf-8"), execution_options={"no_parameters": True}
        )


def write(session: Session, statement: Statement, params: Any = None) -> None:
    """Execute a statement whose result nobody reads: now, or with the unit of work's last
    writes when its ``BatchedWrites`` is deferring."""
    writes: BatchedWrites | None = session.info.get(_KEY)
    if writes is None:
        _execute(session.connection(), statement, params)
    else:
        writes.execute(statement, params)


def write_then(session: Session, statement: Statement, params: Any, then: Then) -> None:
    """Execute a write, then ``then()``: now, or last among the unit of work's last writes
    (``then`` once they succeeded) when its ``BatchedWrites`` is deferring."""
    writes: BatchedWrites | None = session.info.get(_KEY)
    if writes is None:
        _execute(session.connection(), statement, params)
        then()
    else:
        writes.execute_then(statement, params, then)


def read(session: Session) -> Connection:
    """The session's connection for a statement whose result is read, after what was kept."""
    writes: BatchedWrites | None = session.info.get(_KEY)
    if writes is not None:
        writes.send()
    return session.connection()


# The adapters' text() statements are module constants: each is compiled once. Kept with
# the statement, so its id is never another's.
_TEXTS: dict[int, tuple[TextClause, str]] = {}


def _execute(connection: Connection, statement: Statement, params: Any) -> Any:
    if isinstance(statement, Prepared):
        return run(connection, statement, params)
    return connection.execute(statement, params)


def _rendered(connection: Connection, cursor: Any, statement: Statement, params: Any) -> bytes:
    if isinstance(statement, Prepared):
        return bytes(cursor.mogrify(statement.execute_sql, _arrays(params)))
    known = _TEXTS.get(id(statement))
    if known is not None:
        return bytes(cursor.mogrify(known[1], _arrays(params)))
    if not isinstance(statement, ClauseElement):
        raise TypeError(f"cannot render {type(statement).__name__} for a batch of writes")
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    if isinstance(statement, TextClause):
        _TEXTS[id(statement)] = (statement, compiled.string)
    return bytes(cursor.mogrify(compiled.string, _arrays(compiled.construct_params(params))))


def _arrays(params: Any) -> Any:
    """The parameters with each list as an array literal (``pg_arrays``); None stays None,
    so that a statement without parameters is not searched for %-placeholders."""
    return with_literal_arrays(params) if params else params
