"""The chaos table: one row per fault-injection scenario, printed at the end of the run
(``conftest.pytest_terminal_summary``) and written by `make chaos`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    scenario: str
    sent: int
    applied: int
    dead_lettered: int
    lost: int
    doubled: int
    recovery_s: float | None
    note: str = ""


RESULTS: list[Outcome] = []


def render(results: list[Outcome]) -> str:
    columns = ("sent", 6), ("applied", 8), ("DLQ", 6), ("lost", 5), ("doubled", 8), ("recovery", 9)
    wide = max([24, *(len(r.scenario) for r in results)])
    head = (
        f"{'scenario':<{wide}} "
        + " ".join(f"{name:>{width}}" for name, width in columns)
        + "  note"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s"
        lines.append(
            f"{r.scenario:<{wide}} {r.sent:>6} {r.applied:>8} {r.dead_lettered:>6} {r.lost:>5} "
            f"{r.doubled:>8} {recovery:>9}  {r.note}"
        )
    return "\n".join(lines)
