"""The benchmark's plots: latency distribution, CPU per command by process, latency vs load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

# What issue 14 measured before any of its changes, and its budget, for the CPU chart.
ISSUE_14_BEFORE = {"broker": 197, "consumer": 130, "postgres": 122, "relay": 100, "registry": 5}
# (The issue gives the registry no budget of its own: it gets what the others leave of 250.)
ISSUE_14_BUDGET = {"broker": 60, "consumer": 70, "postgres": 70, "relay": 40, "registry": 10}
PROCESSES = ("broker", "postgres", "registry", "consumer", "relay", "baseline")
COLOURS = {
    "broker": "#4477aa",
    "postgres": "#66ccee",
    "registry": "#228833",
    "consumer": "#ccbb44",
    "relay": "#ee6677",
    "baseline": "#aa3377",
    "bench": "#bbbbbb",
}


def plot_latency(samples_ms: list[float], path: Path, rate: int) -> None:
    ordered = sorted(samples_ms)
    figure, (histogram, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    histogram.hist(ordered, bins=60, color="#4477aa")
    histogram.set_xlabel("produce -> Allocated read back (ms)")
    histogram.set_ylabel("commands")
    histogram.set_title(f"latency at {rate} commands/s")
    cdf.plot(ordered, [n / len(ordered) for n in range(1, len(ordered) + 1)], color="#aa3377")
    cdf.set_xscale("log")
    cdf.set_xlabel("ms (log scale)")
    cdf.set_ylabel("fraction of commands")
    cdf.grid(True, which="both", alpha=0.3)
    for q in (0.5, 0.95, 0.99):
        value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        cdf.axvline(value, linestyle=":", color="grey")
        cdf.annotate(f"p{int(q * 100)} {value:.0f}", (value, q), fontsize=8)
    _save(figure, path)


def plot_cpu(bars: dict[str, dict[str, float]], path: Path) -> None:
    """Stacked bars of CPU µs per command by process; ``bench`` (the load generator and event
    reader) hatched above the pipeline's, and what the rest of the machine used meanwhile (other
    developers' work: the noise) under each bar's name."""
    figure, axes = plt.subplots(figsize=(9, 5))
    labels = list(bars)
    for x, label in enumerate(labels):
        bottom = 0.0
        for name in (*PROCESSES, "bench"):
            height = max(bars[label].get(name, 0.0), 0.0)
            if not height:
                continue
            axes.bar(
                x,
                height,
                bottom=bottom,
                color=COLOURS[name],
                edgecolor="grey",
                hatch="//" if name == "bench" else None,
                label=name,
            )
            bottom += height
        total = sum(bars[label].get(n, 0.0) for n in PROCESSES)
        axes.annotate(f"{total:.0f}", (x, total), ha="center", va="bottom", fontsize=9)
    handles, names = axes.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    axes.legend(unique.values(), unique.keys(), fontsize=8, loc="upper right")
    ticks = [
        f"{label}\nrest of machine {bars[label]['other']:.0f}" if "other" in bars[label] else label
        for label in labels
    ]
    axes.set_xticks(range(len(labels)), ticks, fontsize=8)
    axes.set_ylabel("CPU µs per command (number: the pipeline's total)")
    axes.set_title("CPU per command by process, first command produced to last event read back")
    _save(figure, path)


def plot_load(curve: dict[str, Any], path: Path) -> None:
    points = curve["points"]
    rates = [p["rate"] for p in points]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.plot(rates, [p["p50"] for p in points], "o-", color="#4477aa", label="p50")
    axes.plot(rates, [p["p99"] for p in points], "s-", color="#ee6677", label="p99")
    axes.axhline(curve["p99_limit_ms"], linestyle=":", color="grey", label="p99 limit")
    if curve["knee_per_s"]:
        knee = f"knee {curve['knee_per_s']:.0f}/s" + ("" if curve["knee_bounded"] else " or more")
        axes.axvline(curve["knee_per_s"], linestyle="--", color="#228833", label=knee)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(rates, [f"{r:g}" for r in rates], fontsize=8)
    axes.set_xlabel("offered load, Allocate commands/s (open loop)")
    axes.set_ylabel("produce -> Allocated read back (ms)")
    axes.set_title(f"latency against load, {curve['step_seconds']:g} s per rate")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
