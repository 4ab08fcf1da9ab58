"""Summaries of repeated runs: percentiles of samples, medians of results."""

from __future__ import annotations

import statistics
from typing import Any


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


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number's median over the runs, key by key (nested dicts too); lists are joined;
    other values (a method's name) are taken from the first run."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = medians([run[key] for run in runs])
        elif isinstance(first, list):  # names flagged in any run
            out[key] = sorted({item for run in runs for item in run[key]})
        elif isinstance(first, int | float) and not isinstance(first, bool):
            out[key] = statistics.median(run[key] for run in runs)
        else:
            out[key] = first
    return out
