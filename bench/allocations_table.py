"""``python -m bench.allocations_table``: PostgreSQL's CPU per allocated line, by table shape.

A unit of work that allocates writes its lines the way ``allocation/adapters/products/lines.py``
does: one prepared ``INSERT INTO allocations ... SELECT * FROM unnest(arrays)`` for the whole
flush, then one ``UPDATE batches ... FROM unnest(...)`` for the batches' totals, then COMMIT. This
runs exactly that, ``--lines`` lines per transaction, against copies of the ``allocations`` table
in five shapes, each in a schema of its own of a throwaway database (same products and batches):

- ``current``: a bigserial ``id`` primary key, the foreign key to ``batches``, the unique
  constraint ``(batch_id, qty, orderid, sku)`` and the ``(sku, orderid)`` index (migration 0013);
- ``pk``: no ``id``; ``(batch_id, qty, orderid, sku)`` is the primary key; foreign key kept;
- ``nofk``: as ``current`` without the foreign key;
- ``pk_nofk``: both;
- ``m0014``: what migration 0014 leaves: no ``id``, the unique constraint as the key, no
  foreign key, and the statement-level trigger on ``batches`` that refuses deletes.

The figure is the backend's own CPU (``/proc/<pid>/schedstat``, nanoseconds on CPU) over the
transactions, divided by the lines: the insert, its indexes, the foreign key's per-row check,
the totals' update, WAL insertion and the commit. Background processes (WAL writer, autovacuum,
checkpointer) are not counted; fewer indexes only make their share smaller. The shapes take turns,
round after round, on emptied tables; the median of the rounds is reported.

``--migrated`` measures the service's own ``allocations`` instead of copies: a throwaway database
migrated to 0013, then before each round taken to 0014 or back to 0013 by the migrations.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

from allocation.adapters.database import make_engine
from allocation.adapters.schema_migrations import downgrade, migrate
from allocation.config import load_settings
from testkit.databases import throwaway_database

SKUS, BATCHES_PER_SKU = 50, 4

_COMMON = """
    CREATE SCHEMA {s};
    CREATE TABLE {s}.products (sku varchar(255) PRIMARY KEY,
                               version_number integer NOT NULL DEFAULT 0);
    CREATE TABLE {s}.batches (
        id serial PRIMARY KEY, reference varchar(255) NOT NULL UNIQUE,
        sku varchar(255) NOT NULL REFERENCES {s}.products (sku),
        purchased_quantity integer NOT NULL, allocated_quantity integer NOT NULL DEFAULT 0,
        eta date, version integer NOT NULL DEFAULT 1);
    CREATE INDEX ON {s}.batches (sku);
"""
_FK = "REFERENCES {s}.batches (id)"
_WITH_ID = """CREATE TABLE {s}.allocations (
    id bigserial PRIMARY KEY, batch_id integer NOT NULL {fk},
    orderid varchar(255) NOT NULL, sku varchar(255) NOT NULL, qty integer NOT NULL,
    CONSTRAINT uq_allocations_line UNIQUE (batch_id, qty, orderid, sku))"""
_WITHOUT_ID = """CREATE TABLE {s}.allocations (
    batch_id integer NOT NULL {fk},
    orderid varchar(255) NOT NULL, sku varchar(255) NOT NULL, qty integer NOT NULL,
    CONSTRAINT {key} (batch_id, qty, orderid, sku))"""
_KEPT = """
    CREATE FUNCTION {s}.batches_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'batches are never deleted'; END $$;
    CREATE TRIGGER batches_are_kept BEFORE DELETE OR TRUNCATE OR UPDATE OF id ON {s}.batches
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.batches_are_kept();
"""
# shape -> (table DDL, foreign key, extra DDL)
SHAPES = {
    "current": (_WITH_ID, True, ""),
    "pk": (_WITHOUT_ID.replace("{key}", "pk_allocations PRIMARY KEY"), True, ""),
    "nofk": (_WITH_ID, False, ""),
    "pk_nofk": (_WITHOUT_ID.replace("{key}", "pk_allocations PRIMARY KEY"), False, ""),
    "m0014": (_WITHOUT_ID.replace("{key}", "uq_allocations_line UNIQUE"), False, _KEPT),
}

_INSERT = (
    "PREPARE ins AS INSERT INTO allocations (batch_id, orderid, sku, qty) "
    "SELECT * FROM unnest(CAST($1 AS integer[]), CAST($2 AS text[]), "
    "CAST($3 AS text[]), CAST($4 AS integer[]))"
)
_TOTALS = (
    "UPDATE batches SET allocated_quantity = batches.allocated_quantity + t.total "
    "FROM unnest(CAST(%s AS integer[]), CAST(%s AS integer[])) AS t(id, total) "
    "WHERE batches.id = t.id"
)


_SEED = f"""
    INSERT INTO {{s}}.products (sku) SELECT 'sku-' || n FROM generate_series(1, {SKUS}) n;
    INSERT INTO {{s}}.batches (reference, sku, purchased_quantity)
    SELECT 'batch-' || s || '-' || b, 'sku-' || s, 1000000000
    FROM generate_series(1, {SKUS}) s, generate_series(1, {BATCHES_PER_SKU}) b ORDER BY s, b;
"""


def create(cursor: Any, shape: str) -> None:
    table, with_fk, extra = SHAPES[shape]
    cursor.execute(_COMMON.format(s=shape))
    cursor.execute(table.format(s=shape, fk=_FK.format(s=shape) if with_fk else ""))
    if extra:
        cursor.execute(extra.format(s=shape))
    cursor.execute(f"CREATE INDEX ix_allocations_sku_orderid ON {shape}.allocations (sku, orderid)")
    cursor.execute(_SEED.format(s=shape))


def on_cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def run_round(
    connection: Any, pid: int, shape: str, transactions: int, lines: int, seed: int
) -> float:
    """``shape``: the schema holding the tables."""
    """Empty the shape's table, then time ``transactions`` of ``lines`` lines; µs per line."""
    rng = random.Random(seed)  # every shape gets the same lines
    cursor = connection.cursor()
    cursor.execute(f"TRUNCATE {shape}.allocations")
    cursor.execute(f"UPDATE {shape}.batches SET allocated_quantity = 0")
    connection.commit()
    cursor.execute(f"SET search_path = {shape}")
    cursor.execute("DEALLOCATE ALL")
    cursor.execute(_INSERT)
    connection.commit()
    # Batch ids as ``create`` numbers them: the sku's n-th batch is (sku - 1) * per sku + n.
    batches = [
        (s, (s - 1) * BATCHES_PER_SKU + n)
        for s in range(1, SKUS + 1)
        for n in range(1, BATCHES_PER_SKU + 1)
    ]
    work: list[list[tuple[int, str, str, int]]] = []
    for t in range(transactions):
        rows = []
        for n in range(lines):
            sku, batch = rng.choice(batches)
            orderid = f"order-{seed}-{t}-{n}-{rng.getrandbits(48):x}"
            rows.append((batch, orderid, f"sku-{sku}", rng.randint(1, 9)))
        work.append(rows)
    started_ns = on_cpu_ns(pid)
    for rows in work:
        ids, orderids, skus, qtys = (list(c) for c in zip(*rows, strict=True))
        cursor.execute("EXECUTE ins (%s, %s, %s, %s)", (ids, orderids, skus, qtys))
        totals: dict[int, int] = {}
        for b, _, _, q in rows:
            totals[b] = totals.get(b, 0) + q
        cursor.execute(_TOTALS, (list(totals), list(totals.values())))
        connection.commit()
    used_ns = on_cpu_ns(pid) - started_ns
    cursor.execute("SET search_path = public")
    connection.commit()
    return used_ns / 1000 / (transactions * lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.allocations_table", description=__doc__)
    parser.add_argument("--lines", type=int, default=200, help="lines per transaction")
    parser.add_argument("--transactions", type=int, default=100, help="per round and shape")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--migrated",
        action="store_true",
        help="the service's own tables instead of copies, taken from 0013 to 0014 and back "
        "by the migrations before each round",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"lines_per_transaction": args.lines, "rounds": args.rounds}
    with throwaway_database(load_settings(), prefix="allocation_bench") as settings:
        url = make_url(settings.migration_sqlalchemy_url)
        connection = psycopg2.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
        )
        owner = make_engine(settings.migration_sqlalchemy_url, pool_size=1)
        try:
            cursor = connection.cursor()
            cursor.execute("SET plan_cache_mode = force_generic_plan")  # as the service does
            cursor.execute("SELECT pg_backend_pid(), current_setting('server_version')")
            pid, version = cursor.fetchone()
            results["postgresql"] = version
            if args.migrated:
                migrate(owner, "0013")
                cursor.execute(_SEED.format(s="public"))
                connection.commit()
                steps: dict[str, Callable[[], None]] = {
                    "0013": lambda: downgrade(owner, "0013"),
                    "0014": lambda: migrate(owner, "0014"),
                }
            else:
                for shape in SHAPES:
                    create(cursor, shape)
                connection.commit()
                steps = {shape: lambda: None for shape in SHAPES}
            per_shape: dict[str, list[float]] = {shape: [] for shape in steps}
            for r in range(args.rounds):
                for shape, step in steps.items():
                    step()
                    schema = "public" if args.migrated else shape
                    per_shape[shape].append(
                        run_round(connection, pid, schema, args.transactions, args.lines, seed=r)
                    )
        finally:
            connection.close()
            owner.dispose()
    results["pg_backend_cpu_us_per_line"] = {
        shape: {
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }
        for shape, values in per_shape.items()
    }
    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
