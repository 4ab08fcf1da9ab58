"""The figures of PostgreSQL on its own: pgbench's one-update commit ceiling, which the
end-to-end rate is compared with, and how an allocation's time grows with a sku's history."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from sqlalchemy import text

from allocation.adapters.database import make_engine
from allocation.bootstrap import bootstrap
from allocation.domain import commands
from bench.environment import BenchDatabase
from bench.pipeline import LOGS
from bench.scenarios import Sizes
from bench.workload import seed_skus


def commit_ceiling(db: BenchDatabase, seconds: float = 10.0, clients: int = 4) -> float:
    """Single-row update-and-commit transactions per second with pgbench, 4 connections."""
    # Made by the owner role (the service's may not create a table); the default privileges
    # let the service's role, which pgbench connects as, update its rows.
    owner = make_engine(db.settings.migration_sqlalchemy_url, pool_size=1)
    try:
        with owner.begin() as connection:
            connection.execute(
                text("CREATE TABLE IF NOT EXISTS bench_ceiling (id int primary key, n bigint)")
            )
            connection.execute(text("TRUNCATE bench_ceiling"))
            connection.execute(
                text("INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, 1000) g")
            )
    finally:
        owner.dispose()
    script = LOGS / "ceiling.sql"
    LOGS.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "\\set id random(1, 1000)\nUPDATE bench_ceiling SET n = n + 1 WHERE id = :id;\n"
    )
    url = db.settings.database_url
    result = subprocess.run(
        [
            _pgbench(),
            "-n",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(int(seconds)),
            "-f",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no tps:\n{result.stdout}\n{result.stderr}")


def _pgbench() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    return str(found[-1]) if found else "pgbench"


def growth(db: BenchDatabase, sizes: Sizes) -> dict[str, float]:
    """Allocation latency on a sku with a long history over that on a sku with ten allocations."""
    long_sku, short_sku = seed_skus(db, 2)
    for sku, history in ((long_sku, sizes.growth_history), (short_sku, 10)):
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    """
                    WITH b AS (SELECT id FROM batches WHERE sku = :sku)
                    INSERT INTO allocations (batch_id, orderid, sku, qty)
                    SELECT b.id, 'history-' || g, :sku, 1 FROM b, generate_series(1, :n) AS g
                    """
                ),
                {"sku": sku, "n": history},
            )
            connection.execute(
                text("UPDATE batches SET allocated_quantity = :n WHERE sku = :sku"),
                {"sku": sku, "n": history},
            )
    # Only the table's owner may ANALYZE it (the service's role would be skipped with a warning).
    owner = make_engine(db.settings.migration_sqlalchemy_url, pool_size=1)
    try:
        with owner.begin() as connection:
            connection.execute(text("ANALYZE allocations"))
    finally:
        owner.dispose()
    application = bootstrap(db.settings)
    timings: dict[str, list[float]] = {long_sku: [], short_sku: []}
    try:
        for n in range(sizes.growth_samples):
            for sku in (long_sku, short_sku):
                started = time.perf_counter()
                application.bus.handle(commands.Allocate(f"g-{n}", sku, 1))
                timings[sku].append(time.perf_counter() - started)
    finally:
        application.close()
    long_ms = statistics.median(timings[long_sku]) * 1000
    short_ms = statistics.median(timings[short_sku]) * 1000
    return {
        "growth_ratio": long_ms / short_ms,
        "long_history_ms": long_ms,
        "short_history_ms": short_ms,
    }
