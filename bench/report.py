"""The benchmark's table, with each figure beside its target, and the latency plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# figure -> (target, "min" when the figure must reach it, "max" when it must stay under it)
TARGETS: dict[str, tuple[float, str]] = {
    "e2e_cmds_per_s": (3000, "min"),
    "ratio_vs_baseline": (5, "min"),
    "ratio_vs_commit_ceiling": (1.5, "min"),
    "latency_p99_ms": (100, "max"),
    "relay_rows_per_s": (10_000, "min"),
    "growth_ratio": (1.5, "max"),
}


def render_table(results: dict[str, Any]) -> str:
    rows = ["figure                        value      target   met"]
    for name, value in results.get("figures", {}).items():
        target = TARGETS.get(name)
        if target is None:
            rows.append(f"{name:<28} {value:>10.1f}")
            continue
        bound, kind = target
        met = value >= bound if kind == "min" else value <= bound
        sign = ">=" if kind == "min" else "<="
        rows.append(f"{name:<28} {value:>10.1f}   {sign}{bound:<6g} {'yes' if met else 'NO'}")
    return "\n".join(rows)


def plot_latency(samples_ms: list[float], path: Path, sizes: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(samples_ms)
    figure, (histogram, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    histogram.hist(ordered, bins=60, color="#4477aa")
    histogram.set_xlabel("produce -> Allocated read back (ms)")
    histogram.set_ylabel("commands")
    histogram.set_title(f"latency at {sizes.latency_rate} commands/s")
    cdf.plot(ordered, [n / len(ordered) for n in range(1, len(ordered) + 1)], color="#aa3377")
    cdf.set_xscale("log")
    cdf.set_xlabel("ms (log scale)")
    cdf.set_ylabel("fraction of commands")
    cdf.grid(True, which="both", alpha=0.3)
    for q in (0.5, 0.95, 0.99):
        value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        cdf.axvline(value, linestyle=":", color="grey")
        cdf.annotate(f"p{int(q * 100)} {value:.0f}", (value, q), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
