"""Hot statements PostgreSQL plans once per connection: PREPARE, then EXECUTE by name.

psycopg2 sends every statement as text, so PostgreSQL parses and plans it anew on
each call. For the unit of work's short statements planning cost more than running
them (the allocations lookup: 89 µs to plan, 19 to run). A ``Prepared`` statement
is prepared on a connection the first time it runs there (one round trip, once per
connection; a prepared statement outlives a rolled-back transaction, so it is noted
as soon as PREPARE succeeds) and executed by name from then on.

The statements name their columns and return no rows but what they select, so a
migration that adds a column never changes a prepared statement's result type.
Behind a transaction-pooling PgBouncer older than 1.21, use session pooling.

Lookups by a list of keys. A new database's first transactions plan these statements
while the tables are empty and never analyzed, and PostgreSQL keeps those plans until
autovacuum first analyzes the tables: a minute or more, while they fill. Costed for a
table that small, a lookup written as ``= ANY($keys)`` or as a join with the unnested
keys is a sequential scan on every call, each row compared with every key (104 ms for
500 ids over an inbox of 20,000 rows) or hashed against them (0.5 ms for the 8 keys of
an API group over 4,000 allocations). So the keys are unnested and each probes the
table from a LATERAL subquery that ``OFFSET 0`` (or ``LIMIT``) keeps the planner from
flattening into a join: per key, the index is the cheaper plan on a table never
analyzed and on any table of more than a few pages, and it is the plan the planner
picks for the join once the tables are analyzed (``tests/integration/test_generic_plans.py``).
An UPDATE by a list of keys finds each row that way, then updates it by the ``ctid`` it
was found at (a TID scan).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, TextClause, event, text
from sqlalchemy.engine import Connection

from allocation.adapters.pg_arrays import with_literal_arrays

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_NO_PARAMETERS = {"no_parameters": True}  # the SQL is final: psycopg2 must not parse % in it

# Per DBAPI connection: the names prepared on it. A new connection starts with none.
_READY: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class Prepared:
    """A statement written as for ``text()`` (``:name`` parameters), run by name.

    PostgreSQL infers each parameter's type from the statement (``CAST(:ids AS integer[])``
    makes it integer[]). EXECUTE's arguments then need an assignment cast to that type, which
    text[] lacks towards uuid[] or jsonb[]: ``types`` declares such parameters as they are
    sent (text[]), the statement's own CAST converting them as before.
    """

    def __init__(self, name: str, sql: str, types: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.statement: TextClause = text(sql)  # the same statement, unprepared
        order: list[str] = []
        for found in _NAMED.findall(sql):
            if found not in order:
                order.append(found)
        numbered = _NAMED.sub(lambda m: f"${order.index(m.group(1)) + 1}", sql)
        declared = ", ".join((types or {}).get(p, "unknown") for p in order)
        arguments = ", ".join(f"%({p})s" for p in order)
        # Without parameters, no parentheses: PostgreSQL refuses an empty list.
        self.prepare_sql = f"PREPARE {name}{f' ({declared})' if order else ''} AS {numbered}"
        self.execute_sql = f"EXECUTE {name}{f' ({arguments})' if order else ''}"

    def __repr__(self) -> str:
        return f"Prepared({self.name!r})"


def plan_generically(engine: Engine) -> None:
    """Each new connection of ``engine`` plans its prepared statements once, for any values.

    Left to choose (plan_cache_mode auto), PostgreSQL compares the generic plan, costed for
    arrays of an assumed ten elements, with the plans it made for the first five calls, which
    knew the arrays held one: it keeps planning anew on every call, the cost this module
    avoids. The statements prepared here look rows up (or update them) by key, one index
    probe per key whatever the array holds. It applies to prepared statements only: a
    statement sent as text is planned for its values as always.
    """

    def generic(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
        finally:
            cursor.close()
        dbapi_connection.commit()  # outside any transaction of the service's: it stays set

    event.listen(engine, "connect", generic)


def prepare(connection: Connection, statement: Prepared) -> None:
    """PREPARE ``statement`` on this connection unless it already was."""
    dbapi = connection.connection.dbapi_connection
    ready = _READY.setdefault(dbapi, set())
    if statement.name not in ready:
        connection.exec_driver_sql(statement.prepare_sql, execution_options=_NO_PARAMETERS)
        ready.add(statement.name)


def run(connection: Connection, statement: Prepared, params: Mapping[str, Any]) -> Any:
    """EXECUTE ``statement`` with ``params``, preparing it first on a connection new to it.

    Returns SQLAlchemy's ``CursorResult``: rows as the statement selects them, ``rowcount``.
    """
    prepare(connection, statement)
    return connection.exec_driver_sql(statement.execute_sql, with_literal_arrays(params))
