"""``python -m bench [--quick] [--runs N]``: every figure of the benchmark, as a table and JSON.

Each figure is the median of ``--runs`` runs (3 by default); the JSON keeps every run.
Needs the local stack (``make stack-up``); works in a throwaway database and topics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.environment import bench_database
from bench.report import plot_latency, render_table

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--only", nargs="*", help="figures to measure (default: all)")
    args = parser.parse_args(argv)
    sizes = scenarios.QUICK if args.quick else scenarios.Sizes()
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs)
    results = run(sizes, set(args.only or FIGURES), args.out)
    print(render_table(results))
    print(f"\nwritten: {args.out}")
    return 0


def run(sizes: scenarios.Sizes, wanted: set[str], out: Path) -> dict[str, Any]:
    """Measure, then write the JSON (every run kept) and the latency plot beside it."""
    results = measure(sizes, wanted)
    results["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": dataclasses.asdict(sizes),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if "latency" in results:
        plot_latency(results["latency"]["all_ms"], out.with_name("latency.png"), sizes)
    return results


FIGURES = ("e2e", "baseline", "ceiling", "latency", "consumer", "relay", "growth")


def measure(sizes: scenarios.Sizes, wanted: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with bench_database() as db:
        steps: dict[str, Callable[[], Any]] = {
            "e2e": lambda: scenarios.e2e(db, sizes, ["consumer", "relay"]),
            "baseline": lambda: scenarios.e2e(db, sizes, ["baseline"]),
            "ceiling": lambda: scenarios.commit_ceiling(db, sizes.ceiling_seconds),
            "latency": lambda: scenarios.latency(db, sizes),
            "consumer": lambda: scenarios.consumer_only(db, sizes),
            "relay": lambda: scenarios.relay_only(db, sizes),
            "growth": lambda: scenarios.growth(db, sizes),
        }
        for name in FIGURES:
            if name not in wanted:
                continue
            runs = []
            for n in range(sizes.runs):
                started = time.monotonic()
                runs.append(steps[name]())
                print(
                    f"{name} run {n + 1}/{sizes.runs}: {time.monotonic() - started:.1f}s",
                    file=sys.stderr,
                )
            results[name] = summarise(name, runs)
    derive(results)
    return results


def summarise(name: str, runs: list[Any]) -> dict[str, Any]:
    if name == "latency":
        per_run = [percentiles(r) for r in runs]
        every = [ms for r in runs for ms in r]
        return {
            "runs": per_run,
            **{k: statistics.median(p[k] for p in per_run) for k in ("p50", "p95", "p99")},
            "all_ms": every,
        }
    if name in ("ceiling", "consumer", "relay"):
        return {"runs": runs, "median": statistics.median(runs)}
    keys = runs[0].keys()
    return {"runs": runs, **{k: statistics.median(r[k] for r in runs) for k in keys}}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
        "n": len(ordered),
    }


def derive(results: dict[str, Any]) -> None:
    """The figures the issue names, computed from the medians."""
    figures: dict[str, float] = {}
    if "e2e" in results:
        figures["e2e_cmds_per_s"] = results["e2e"]["cmds_per_s"]
        for name in ("consumer", "relay"):
            key = f"{name}_peak_rss_mib"
            if key in results["e2e"]:
                figures[key] = results["e2e"][key]
    if "baseline" in results:
        figures["baseline_cmds_per_s"] = results["baseline"]["cmds_per_s"]
    if "ceiling" in results:
        figures["commit_ceiling_per_s"] = results["ceiling"]["median"]
    if "e2e_cmds_per_s" in figures and "baseline_cmds_per_s" in figures:
        figures["ratio_vs_baseline"] = figures["e2e_cmds_per_s"] / figures["baseline_cmds_per_s"]
    if "e2e_cmds_per_s" in figures and "commit_ceiling_per_s" in figures:
        figures["ratio_vs_commit_ceiling"] = (
            figures["e2e_cmds_per_s"] / figures["commit_ceiling_per_s"]
        )
    if "latency" in results:
        figures |= {f"latency_{k}_ms": results["latency"][k] for k in ("p50", "p95", "p99")}
    if "consumer" in results:
        figures["consumer_cmds_per_s"] = results["consumer"]["median"]
    if "relay" in results:
        figures["relay_rows_per_s"] = results["relay"]["median"]
    if "growth" in results:
        figures["growth_ratio"] = results["growth"]["growth_ratio"]
    results["figures"] = figures


if __name__ == "__main__":
    sys.exit(main())
