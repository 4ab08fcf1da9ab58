"""``python -m bench [--quick] [--runs N]``: every figure of the benchmark, as a table and JSON.

Each figure is the median of ``--runs`` runs (3 by default; the latency curve runs once); the
JSON keeps every run, and gives each figure its target and whether it was met. Needs the local
stack (``make stack-up``; ``STACK_HOME`` names it when it is another checkout's); works in a
throwaway database and topics. Measuring the servers' CPU moves them into cgroups for a while,
which needs root; without it the servers' CPU comes from /proc samples. The scale-out figure
(``--only scaleout``, ``make bench-scaleout``; not in the default run) caps each consumer's CPU
with a cgroup v1 ``cpu`` group, which needs root too; without one it is skipped and says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import alone, database_figures, machine, scenarios
from bench.curve import latency_curve
from bench.environment import bench_database
from bench.floor import floor, floor_figures
from bench.http_load import http_load
from bench.report import (
    REFERENCES,
    figure,
    render_markdown,
    render_table,
    shared_machine_warnings,
)
from bench.scaleout import scaleout, scaleout_figures, scaleout_warnings
from bench.stats import medians, percentiles
from bench.tracing import tracing_cost, tracing_figures

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=FIGURES,
        help=f"figures to measure (default: all but {', '.join(sorted(OWN_TARGET))})",
    )
    parser.add_argument(
        "--http-client", choices=("wrk", "asyncio"), help="default: wrk when installed"
    )
    args = parser.parse_args(argv)
    sizes = scenarios.QUICK if args.quick else scenarios.Sizes()
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs)
    # SIGTERM unwinds like Ctrl-C, so the servers leave the benchmark's cgroups either way; and
    # SIGINT does even where it was ignored at start (a background job of a script).
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    wanted = set(args.only or set(FIGURES) - OWN_TARGET)
    results = run(sizes, wanted, args.out, args.http_client)
    print(render_table(results))
    for warning in results["warnings"]:
        print(f"warning: {warning}")
    print(f"\nwritten: {args.out} ({time.monotonic() - started:.0f}s)")
    return 0


def run(
    sizes: scenarios.Sizes, wanted: set[str], out: Path, http_client: str | None = None
) -> dict[str, Any]:
    """Measure, then write the JSON (every run kept), its Markdown table and the plots."""
    started = time.monotonic()
    results = measure(sizes, wanted, http_client)
    results["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started),
        "sizes": dataclasses.asdict(sizes),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_markdown(results) + "\n")
    from bench import plots  # matplotlib only once there is something to draw

    if "latency" in results:
        plots.plot_latency(
            results["latency"]["all_ms"], out.with_name("latency.png"), sizes.latency_rate
        )
    if "e2e" in results:
        plots.plot_cpu(cpu_bars(results), out.with_name("cpu.png"))
    if "curve" in results:
        plots.plot_load(results["curve"], out.with_name("load.png"))
    return results


FIGURES = (
    "e2e",
    "tracing",
    "baseline",
    "ceiling",
    "latency",
    "curve",
    "consumer",
    "relay",
    "growth",
    "http",
    "floor",
    "scaleout",
)
ONCE = {"curve"}  # a dozen load steps already: one run fits the time
OWN_TARGET = {"scaleout"}  # `make bench-scaleout` (`--only scaleout`): not in the default run


def measure(sizes: scenarios.Sizes, wanted: set[str], http_client: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with machine.yardstick() as speed, bench_database() as db:
        steps: dict[str, Callable[[], Any]] = {
            "e2e": lambda: scenarios.e2e(db, sizes, ["consumer", "relay"]),
            "tracing": lambda: tracing_cost(db, sizes),
            "baseline": lambda: scenarios.e2e(db, sizes, ["baseline"]),
            "ceiling": lambda: database_figures.commit_ceiling(db, sizes.ceiling_seconds),
            "latency": lambda: scenarios.latency(db, sizes),
            "curve": lambda: latency_curve(db, sizes),
            "consumer": lambda: alone.consumer_only(db, sizes),
            "relay": lambda: alone.relay_only(db, sizes),
            "growth": lambda: database_figures.growth(db, sizes),
            "http": lambda: http_load(db, sizes, http_client),
            "floor": lambda: floor(db, sizes, http_client),
            "scaleout": lambda: scaleout(db, sizes),
        }
        try:
            for name in FIGURES:
                if name not in wanted:
                    continue
                runs = []
                count = 1 if name in ONCE else sizes.runs
                for n in range(count):
                    started = time.monotonic()
                    runs.append(steps[name]())
                    print(
                        f"{name} run {n + 1}/{count}: {time.monotonic() - started:.1f}s",
                        file=sys.stderr,
                    )
                results[name] = summarise(name, runs)
        except Exception as failure:
            changes = machine.restarted(db.servers)
            if changes:  # the likely cause, which the step's own error does not name
                raise RuntimeError(machine.restart_warning(changes)) from failure
            raise
        restarted = machine.restarted(db.servers)
    results["machine"] = {"yardstick_ms": speed, "servers_restarted": restarted}
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
    if name == "curve":
        curve: dict[str, Any] = runs[0]
        return curve
    if name == "ceiling":
        return {"runs": runs, "median": statistics.median(runs)}
    if name in ("consumer", "relay"):  # each run a rate with its CPU by process
        summary = medians(runs)
        return {"runs": runs, "median": summary["per_s"], **summary}
    return {"runs": runs, **medians(runs)}


def derive(results: dict[str, Any]) -> None:
    """The figures the issues name, computed from the medians, each with its target."""
    values: dict[str, float] = {}
    if "e2e" in results:
        e2e = results["e2e"]
        values["e2e_cmds_per_s"] = e2e["cmds_per_s"]
        for name, us in e2e["cpu_us_per_cmd"].items():
            values[f"cpu_us_per_cmd_{name}"] = us
        for name in ("consumer", "relay"):
            if f"{name}_peak_rss_mib" in e2e:
                values[f"{name}_peak_rss_mib"] = e2e[f"{name}_peak_rss_mib"]
    if "baseline" in results:
        values["baseline_cmds_per_s"] = results["baseline"]["cmds_per_s"]
        values["baseline_cpu_us_per_cmd_total"] = results["baseline"]["cpu_us_per_cmd"]["total"]
    if "ceiling" in results:
        values["commit_ceiling_per_s"] = results["ceiling"]["median"]
    if "e2e_cmds_per_s" in values and "baseline_cmds_per_s" in values:
        values["ratio_vs_baseline"] = values["e2e_cmds_per_s"] / values["baseline_cmds_per_s"]
    if "e2e_cmds_per_s" in values and "commit_ceiling_per_s" in values:
        values["ratio_vs_commit_ceiling"] = (
            values["e2e_cmds_per_s"] / values["commit_ceiling_per_s"]
        )
    if "latency" in results:
        values |= {f"latency_{k}_ms": results["latency"][k] for k in ("p50", "p95", "p99")}
    if "curve" in results:
        for point in results["curve"]["points"]:
            values[f"curve_p99_ms_at_{point['rate']:g}"] = point["p99"]
        values["knee_cmds_per_s"] = results["curve"]["knee_per_s"]
    if "consumer" in results:
        values["consumer_cmds_per_s"] = results["consumer"]["median"]
        values |= alone_figures("consumer_alone", results["consumer"], "consumer")
    if "relay" in results:
        values["relay_rows_per_s"] = results["relay"]["median"]
        values |= alone_figures("relay_alone", results["relay"], "relay")
    if "growth" in results:
        values["growth_ratio"] = results["growth"]["growth_ratio"]
    if "http" in results:
        values |= http_figures(results["http"])
    if "floor" in results:
        values |= floor_figures(results["floor"], results.get("http"))
    if "tracing" in results:
        values |= tracing_figures(results["tracing"])
    speed = results.get("machine", {})
    if speed:
        values |= machine.speed_figures(speed["yardstick_ms"])
    skipped = results.get("scaleout", {}).get("skipped")
    scaled = {k: v for k, v in results.get("scaleout", {}).items() if k.startswith("consumers_")}
    values |= scaleout_figures(scaled)
    results["figures"] = {name: figure(value, name) for name, value in values.items()}
    results["references"] = {
        name: {"value": value, "source": source, "measured_here": False}
        for name, (value, source) in REFERENCES.items()
    }
    results["warnings"] = [
        f"{name}: the CPU of {', '.join(emptied)} is incomplete (restarted inside the window)"
        for name, emptied in emptied_groups(results)
    ]
    if skipped:
        results["warnings"].append(f"scaleout: SKIPPED, no CPU caps could be made: {skipped}")
    results["warnings"] += scaleout_warnings(scaled, os.cpu_count() or 1)
    results["warnings"] += shared_machine_warnings(results)
    if speed:
        results["warnings"] += machine.speed_warnings(speed["yardstick_ms"])
        if speed["servers_restarted"]:
            results["warnings"].append(machine.restart_warning(speed["servers_restarted"]))
    if results.get("tracing", {}).get("spans_without_exporter"):
        results["warnings"].append("tracing: spans reached the sink with no exporter configured")


def alone_figures(prefix: str, measured: dict[str, Any], process: str) -> dict[str, float]:
    """What one process alone costs per unit, by process, and how much of a core it used."""
    figures = {
        f"{prefix}_cpu_us_{name}": measured["cpu_us"][name]
        for name in (process, "postgres", "broker", "total")
        if name in measured["cpu_us"]
    }
    figures[f"{prefix}_{process}_cores"] = measured["cores"][process]
    return figures


def emptied_groups(results: dict[str, Any]) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, Any]] = [
        (n, results[n].get("cpu_groups_emptied"))
        for n in ("e2e", "baseline", "curve", "consumer", "relay")
        if n in results
    ]
    tracing = results.get("tracing", {})
    found += [
        (f"tracing {k}", tracing[k]["cpu_groups_emptied"]) for k in ("off", "on") if k in tracing
    ]
    http = results.get("http", {})
    found += [(f"http {k}", http[k]["cpu_groups_emptied"]) for k in http if k != "runs"]
    return [(name, emptied) for name, emptied in found if emptied]


def http_figures(http: dict[str, Any]) -> dict[str, float]:
    many = next(k for k in http if k.startswith("clients_") and k != "clients_1")
    clients = many.removeprefix("clients_")
    return {
        f"http_requests_per_s_{clients}_clients": http[many]["requests_per_s"],
        f"http_cpu_us_per_request_{clients}_clients": http[many]["cpu_us_per_request"]["total"],
        f"http_load_generator_cpu_us_per_request_{clients}_clients": http[many][
            "generator_cpu_us_per_request"
        ],
        "http_requests_per_s_1_client": http["clients_1"]["requests_per_s"],
        "http_p50_ms_1_client": http["clients_1"]["p50_ms"],
    }


def cpu_bars(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The CPU chart's bars: the issue's measurement before, each run of this one, the budget."""
    from bench.plots import ISSUE_14_BEFORE, ISSUE_14_BUDGET

    bars: dict[str, dict[str, float]] = {"issue 14\n(before)": dict(ISSUE_14_BEFORE)}
    for n, run in enumerate(results["e2e"]["runs"], 1):
        bars[f"e2e run {n}\n({run['cpu_method']})"] = run["cpu_us_per_cmd"]
    if "baseline" in results:
        bars["book's shape\n(median)"] = results["baseline"]["cpu_us_per_cmd"]
    bars["issue 14\nbudget"] = dict(ISSUE_14_BUDGET)
    return bars


if __name__ == "__main__":
    sys.exit(main())
