"""The last writes of a unit of work, sent to PostgreSQL in one round trip.

A unit of work that commits writes its staged rows statement by statement: the
allocations, the batches' totals, the read model, the inbox ids, the outbox's
per-key locks and its rows. Nobody reads what those statements return, so while
``deferring`` (from the flush at commit to the commit) they are kept, rendered
the way psycopg2 renders any statement (it interpolates parameters on the client),
and sent together as one multi-statement string: one round trip instead of six,
in the transaction and order they would have run in. An error in any of them is
the batch's, raised as SQLAlchemy raises a failed statement, and the unit of
work rolls back.

A statement whose result is read runs at once, and sends what was kept before it,
so the order never changes. One whose row count alone is read (the products'
version check, ``write_checked``) goes last in the script instead, and its check
runs on the count the script returns (PostgreSQL reports the last statement's):
a round trip fewer per commit, and the check still comes before the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ClauseElement, Executable, TextClause
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from allocation.adapters.pg_arrays import with_literal_arrays
from allocation.adapters.prepared import Prepared, prepare, run

_KEY = "allocation.batched_writes"
Statement = Executable | Prepared
Check = Callable[[int], None]


class BatchedWrites:
    """Per session: statements kept while ``deferring``, sent by ``send``."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._kept: list[tuple[Statement, Any]] = []
        self._last: tuple[Statement, Any, Check] | None = None
        self.deferring = False
        session.info[_KEY] = self

    def execute(self, statement: Statement, params: Any = None) -> None:
        if self.deferring:
            self._kept.append((statement, params))
        else:
            _execute(self._session.connection(), statement, params)

    def execute_checked(self, statement: Statement, params: Any, check: Check) -> None:
        if not self.deferring:
            check(_execute(self._session.connection(), statement, params).rowcount)
        elif self._last is not None:
            raise RuntimeError("one checked write per batch: only the last one's count is known")
        else:
            self._last = (statement, params, check)

    def discard(self) -> None:
        """Forget what was kept (the transaction rolls back) and write at once again."""
        self._kept, self._last = [], None
        self.deferring = False

    def send(self) -> None:
        """Run what was kept, in order, in one round trip; the checked write last, then its
        check."""
        kept, self._kept = self._kept, []
        last, self._last = self._last, None
        if last is not None:
            kept.append(last[:2])
        if not kept:
            return
        connection = self._session.connection()
        if len(kept) == 1:
            result = _execute(connection, *kept[0])
        else:
            result = self._send_script(connection, kept)
        if last is not None:
            last[2](result.rowcount)

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


def write_checked(session: Session, statement: Statement, params: Any, check: Check) -> None:
    """Execute a write whose row count ``check`` judges (raising to roll back): now, or last
    among the unit of work's last writes when its ``BatchedWrites`` is deferring."""
    writes: BatchedWrites | None = session.info.get(_KEY)
    if writes is None:
        check(_execute(session.connection(), statement, params).rowcount)
    else:
        writes.execute_checked(statement, params, check)


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
