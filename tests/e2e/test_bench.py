"""The benchmark harness works end to end at a tiny size; no figure is judged here."""

from __future__ import annotations

import json
from pathlib import Path

from allocation.config import Settings
from bench import scenarios
from bench.__main__ import FIGURES, run


def test_the_harness_measures_every_figure_and_writes_its_report(
    settings: Settings, tmp_path: Path
) -> None:
    tiny = scenarios.Sizes(
        commands=300,
        skus=10,
        latency_rate=100,
        latency_seconds=1.0,
        relay_rows=500,
        growth_history=1_000,
        growth_samples=10,
        ceiling_seconds=2.0,
        runs=1,
    )
    out = tmp_path / "latest.json"
    run(tiny, set(FIGURES), out)

    results = json.loads(out.read_text())
    assert set(FIGURES) <= set(results)
    figures = results["figures"]
    for name in (
        "e2e_cmds_per_s",
        "baseline_cmds_per_s",
        "commit_ceiling_per_s",
        "ratio_vs_baseline",
        "ratio_vs_commit_ceiling",
        "latency_p50_ms",
        "latency_p99_ms",
        "consumer_cmds_per_s",
        "relay_rows_per_s",
        "growth_ratio",
        "consumer_peak_rss_mib",
        "relay_peak_rss_mib",
    ):
        assert figures[name] > 0, name
    assert len(results["latency"]["all_ms"]) == 100
    assert (tmp_path / "latency.png").stat().st_size > 10_000
