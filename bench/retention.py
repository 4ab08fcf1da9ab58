"""``python -m bench.retention [--rows N]``: what pruning expired inbox and outbox rows costs.

Fills the inbox and the outbox of a throwaway database with ``--rows`` expired rows each, shaped
like the service's (an ``id:<uuid>`` message id; an ``Allocated`` event with its JSON payload,
headers and trace context; one inbox row and one outbox row per command, at the top rate the
service applies, so rows share their transaction's time stamp), then measures two ways of
removing them, rows per second and PostgreSQL's CPU (every process of its cluster, autovacuum
included, by ``bench.cpu``):

- ``chained_delete``: what the service runs, retention's passes (``allocation.entrypoints.
  retention``) with an unlimited time budget, then the ``VACUUM`` that autovacuum would run later,
  measured on its own;
- ``partitions``: the same rows in copies of the two tables partitioned by day
  (``PARTITION BY RANGE``), removed by ``DROP TABLE`` of the expired partitions; the copies'
  unique keys must include the partition key (see the README, section Retention).

The fill rate of each shape is reported too: partitioning is paid for on every insert.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from allocation.adapters.database import make_engine
from allocation.entrypoints.retention import Retention, RetentionPolicy
from bench import cpu
from bench.environment import BenchDatabase, bench_database

RESULTS = Path(__file__).parent / "results"
TOP_RATE = 5_500  # commands/s the consumer applies at best (README, Performance)
SLICE = 100_000  # rows per INSERT statement while filling

# Commands of one consumer poll share a transaction and so its now(): 500 per stamp, 11 polls/s.
_ROW_TIME = "timestamptz '{start}' + (n / 500) * interval '1 second' * (500.0 / {rate})"

_FILL_INBOX = """
    INSERT INTO {table} (message_id, processed_at)
    SELECT 'id:' || gen_random_uuid(), {stamp} FROM generate_series(:first, :last) AS n
"""
_FILL_OUTBOX = """
    INSERT INTO {table} (event_id, event_type, topic, key, payload, occurred_at, causation_id,
                         correlation_id, traceparent, schema_version, created_at, published_at)
    SELECT gen_random_uuid(), 'Allocated', 'line-allocated', 'sku-' || (n % 2000),
           jsonb_build_object('orderid', 'order-' || n, 'sku', 'sku-' || (n % 2000),
                              'qty', 1 + n % 9, 'batchref', 'batch-' || (n % 8000),
                              'product_version', n / 2000),
           t, 'id:' || gen_random_uuid(), gen_random_uuid()::text,
           '00-' || md5(n::text) || '-' || left(md5(t::text), 16) || '-01', 1,
           t, t + interval '50 milliseconds'
    FROM (SELECT n, {stamp} AS t FROM generate_series(:first, :last) AS n) AS rows
"""

# Copies of the two tables, partitioned by day; a unique key must hold the partition key.
_PARTITIONED = """
    CREATE TABLE inbox_by_day (LIKE inbox INCLUDING DEFAULTS,
                               PRIMARY KEY (message_id, processed_at))
        PARTITION BY RANGE (processed_at);
    CREATE TABLE outbox_by_day (LIKE outbox INCLUDING DEFAULTS, PRIMARY KEY (id, created_at),
                                UNIQUE (event_id, created_at))
        PARTITION BY RANGE (created_at);
    CREATE INDEX ON outbox_by_day (id) WHERE published_at IS NULL AND parked_at IS NULL;
    CREATE INDEX ON outbox_by_day (key)
        WHERE published_at IS NULL AND parked_at IS NULL AND next_attempt_at IS NOT NULL;
    CREATE INDEX ON outbox_by_day (key) WHERE published_at IS NULL AND parked_at IS NOT NULL;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.retention", description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="expired rows per table")
    parser.add_argument("--chunk", type=int, default=RetentionPolicy.chunk_rows)
    parser.add_argument("--out", type=Path, default=RESULTS / "retention.json")
    args = parser.parse_args(argv)
    with bench_database() as db:
        results = measure(db, args.rows, args.chunk)
    results["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written: {args.out}")
    return 0


def measure(db: BenchDatabase, rows: int, chunk: int) -> dict[str, Any]:
    """Both ways on the same rows: fill, remove, and what each step cost.

    The service's role prunes, as it does in production. The owner role does the rest:
    creating tables and partitions, VACUUM and ANALYZE are the owner's alone (PostgreSQL
    15 and later let no other role create in ``public``)."""
    engine = db.engine
    owner = make_engine(db.settings.migration_sqlalchemy_url, pool_size=1)
    start = "2000-01-01 00:00:00+00"  # long expired, and at midnight: partitions by day
    results: dict[str, Any] = {"rows_per_table": rows, "chunk_rows": chunk, "cpu": None}
    try:
        with metering(db) as window:
            results["fill_plain"] = window(lambda: fill(owner, "inbox", "outbox", rows, start))
            policy = RetentionPolicy(chunk_rows=chunk, pass_s=float("inf"))
            pruner = Retention(engine, policy, threading.Event())
            results["chained_delete"] = window(lambda: _until_caught_up(pruner))
            _require_empty(engine, "inbox", "outbox")
            results["vacuum"] = window(lambda: _vacuum(owner, "inbox", "outbox"))
            partitioned(owner, start, rows)
            results["fill_partitioned"] = window(
                lambda: fill(owner, "inbox_by_day", "outbox_by_day", rows, start)
            )
            results["partitions"] = window(lambda: drop_partitions(owner))
            _require_empty(owner, "inbox_by_day", "outbox_by_day")
            results["cpu"] = window.method
    finally:
        owner.dispose()
    for name in ("chained_delete", "vacuum", "partitions"):
        step = results[name]
        step["rows_per_s"] = round(2 * rows / step["seconds"])
        step["pg_cpu_us_per_row"] = round(step["pg_cpu_s"] / (2 * rows) * 1e6, 2)
    deleted = results["chained_delete"]["seconds"] + results["vacuum"]["seconds"]
    results["chained_delete_with_vacuum_rows_per_s"] = round(2 * rows / deleted)
    results["required_rows_per_s"] = 2 * 2 * TOP_RATE  # an inbox and an outbox row per command
    return results


class _Window:
    method = "none"

    def __call__(self, step: Callable[[], object]) -> dict[str, Any]:
        started = time.monotonic()
        step()
        return {"seconds": round(time.monotonic() - started, 2), "pg_cpu_s": 0.0}


@contextmanager
def metering(db: BenchDatabase) -> Iterator[_Window]:
    """Each step's wall time and PostgreSQL's CPU meanwhile (0 when the servers are unknown)."""
    if db.servers is None:
        yield _Window()
        return
    with cpu.metered({"postgres": db.servers.postgres}) as meter:

        class Metered(_Window):
            method = meter.method

            def __call__(self, step: Callable[[], object]) -> dict[str, Any]:
                with meter.window() as window:
                    result = super().__call__(step)
                result["pg_cpu_s"] = round(window.used["postgres"], 2)
                result["machine_cpu_s"] = round(window.used["machine"], 2)
                return result

        yield Metered()


def fill(engine: Engine, inbox: str, outbox: str, rows: int, start: str) -> None:
    stamp = _ROW_TIME.format(start=start, rate=TOP_RATE)
    for first in range(0, rows, SLICE):
        bounds = {"first": first, "last": min(rows, first + SLICE) - 1}
        with engine.begin() as connection:
            connection.execute(text(_FILL_INBOX.format(table=inbox, stamp=stamp)), bounds)
            connection.execute(text(_FILL_OUTBOX.format(table=outbox, stamp=stamp)), bounds)
    with engine.begin() as connection:
        connection.execute(text(f"ANALYZE {inbox}, {outbox}"))


def _until_caught_up(pruner: Retention) -> None:
    while not pruner.run_pass():
        pass


def _require_empty(engine: Engine, *tables: str) -> None:
    with engine.connect() as connection:
        for table in tables:
            left = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            if left:
                raise AssertionError(f"{left} rows left in {table}")


def _vacuum(engine: Engine, *tables: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM {', '.join(tables)}"))


def partitioned(engine: Engine, start: str, rows: int) -> None:
    """The partitioned copies, a partition a day over the filled rows' days and the next."""
    days = int(rows / TOP_RATE / 86_400) + 2
    with engine.begin() as connection:
        connection.execute(text(_PARTITIONED))
        for table in ("inbox_by_day", "outbox_by_day"):
            for day in range(days):
                connection.execute(
                    text(
                        f"CREATE TABLE {table}_{day} PARTITION OF {table} FOR VALUES "
                        f"FROM (timestamptz '{start}' + interval '{day} days') "
                        f"TO (timestamptz '{start}' + interval '{day + 1} days')"
                    )
                )


def drop_partitions(engine: Engine) -> None:
    """Every partition of both copies is expired: detach each, then drop it."""
    with engine.connect() as connection:
        names = connection.execute(
            text(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent IN ('inbox_by_day'::regclass, 'outbox_by_day'::regclass)"
            )
        ).scalars()
        parents = {n: n.rsplit("_", 1)[0] for n in names}
    for name, parent in parents.items():
        with engine.begin() as connection:
            connection.execute(text(f"ALTER TABLE {parent} DETACH PARTITION {name}"))
            connection.execute(text(f"DROP TABLE {name}"))


if __name__ == "__main__":
    sys.exit(main())
