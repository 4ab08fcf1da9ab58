"""`make bench-retention` runs at a tiny size: both ways of pruning, on the real PostgreSQL."""

from __future__ import annotations

from bench.environment import bench_database
from bench.retention import measure


def test_both_ways_of_pruning_run_and_leave_no_row() -> None:
    with bench_database() as db:
        results = measure(db, rows=2_000, chunk=500)
    for step in ("chained_delete", "vacuum", "partitions"):
        assert results[step]["rows_per_s"] > 0, step
    assert results["rows_per_table"] == 2_000
