"""The benchmark's own arithmetic: knee bisection, medians, targets, CPU per command."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import derive, summarise
from bench.alone import alone
from bench.cpu import Meter, Window, _jit_seconds, per_unit_us
from bench.curve import find_knee
from bench.report import figure, shared_machine_warnings
from bench.stats import medians


def p99_at(knee: float) -> Any:
    """A fake measurement whose p99 crosses the limit above ``knee`` commands/s."""
    measured: list[float] = []

    def measure(rate: float) -> dict[str, float]:
        measured.append(rate)
        return {"rate": rate, "p99": 10.0 if rate <= knee else 500.0}

    return measure, measured


def test_the_knee_is_narrowed_by_bisection_between_a_pass_and_a_fail() -> None:
    measure, measured = p99_at(2_600)
    points = [measure(r) for r in (500, 1_000, 2_000, 4_000)]
    knee, bounded = find_knee(points, measure, steps=3)
    assert bounded
    assert measured[4:] == [3_000, 2_500, 2_750]
    assert knee == 2_500
    assert len(points) == 7


def test_a_knee_above_every_rate_is_reported_as_unbounded() -> None:
    measure, _ = p99_at(10_000)
    knee, bounded = find_knee([measure(r) for r in (500, 1_000)], measure, steps=3)
    assert (knee, bounded) == (1_000, False)


def test_no_rate_under_the_limit_gives_a_knee_of_zero_or_a_lower_bisected_one() -> None:
    measure, _ = p99_at(100)
    knee, bounded = find_knee([measure(500)], measure, steps=2)
    assert bounded
    assert knee == 100  # 250 fails, then 100 passes (rates in steps of 50)


def test_medians_go_key_by_key_into_nested_results_and_keep_names() -> None:
    runs = [
        {"rate": 1.0, "cpu": {"broker": 5.0}, "method": "cgroup2", "emptied": []},
        {"rate": 3.0, "cpu": {"broker": 1.0}, "method": "cgroup2", "emptied": ["broker"]},
        {"rate": 2.0, "cpu": {"broker": 9.0}, "method": "cgroup2", "emptied": []},
    ]
    assert medians(runs) == {
        "rate": 2.0,
        "cpu": {"broker": 5.0},
        "method": "cgroup2",
        "emptied": ["broker"],
    }


def test_a_figure_carries_its_target_and_whether_it_was_met() -> None:
    assert figure(300.0, "cpu_us_per_cmd_total") | {"value": 0} == {
        "value": 0,
        "target": 250,
        "op": "<=",
        "met": False,
        "issue": 14,
    }
    assert figure(9_000.0, "consumer_cmds_per_s")["met"] is True
    assert figure(5.0, "knee_cmds_per_s")["met"] is None


def test_cpu_per_command_totals_the_pipeline_and_leaves_the_rest_of_the_machine_apart() -> None:
    used = {"broker": 0.2, "consumer": 0.1, "bench": 0.05, "machine": 0.5}
    us = per_unit_us(used, 1_000)
    assert round(us["total"]) == 300
    assert round(us["bench"]) == 50
    assert round(us["other"]) == 150
    assert "machine" not in us


def test_the_brokers_jit_is_shown_as_a_part_of_its_figure_not_added_again() -> None:
    used = {"broker": 0.2, "broker_jit": 0.05, "consumer": 0.1, "bench": 0.05, "machine": 0.5}
    us = per_unit_us(used, 1_000)
    assert round(us["total"]) == 300
    assert round(us["broker_jit"]) == 50
    assert round(us["other"]) == 150


def test_the_jvm_compiler_threads_cpu_is_read_from_a_running_jvm(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH")
    source = tmp_path / "Spin.java"  # run from source: compiling it keeps the JIT busy too
    source.write_text(
        "public class Spin { public static void main(String[] a) throws Exception {"
        " long x = 0; long end = System.nanoTime() + 20_000_000_000L;"
        " while (System.nanoTime() < end) { x += Long.toString(x).hashCode(); } } }"
    )
    spinning = subprocess.Popen([java, str(source)])
    try:
        deadline = time.monotonic() + 15
        while _jit_seconds(spinning.pid) == 0.0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _jit_seconds(spinning.pid) > 0.0
    finally:
        spinning.kill()
        spinning.wait()
    assert _jit_seconds(spinning.pid) == 0.0  # exited: nothing to read, no error
    assert _jit_seconds(os.getpid()) == 0.0  # no compiler threads in a Python process


def window(total: float, other: float) -> dict[str, Any]:
    return {"cpu_us_per_cmd": {"total": total, "other": other}}


def test_a_median_window_that_shared_the_machine_is_flagged() -> None:
    results = {
        "e2e": window(422, 108),
        "baseline": window(3000, 20),
        "tracing": {"off": window(221, 5), "on": window(464, 60)},
    }
    warnings = shared_machine_warnings(results)
    assert len(warnings) == 2
    assert warnings[0].startswith("e2e: the rest of the machine used 108 us")
    assert warnings[1].startswith("tracing on:")
    assert shared_machine_warnings({"e2e": window(253, 2.4)}) == []


def test_a_process_alone_is_reported_with_its_cpu_per_unit_and_the_cores_it_used() -> None:
    def run(rate: float, relay_s: float) -> dict[str, object]:
        used = {"relay": relay_s, "postgres": 0.5, "broker": 0.1, "bench": 0.0, "machine": 2.0}
        return alone(rate, Window(used), 50_000, Meter({}))

    # 50,000 rows: 1.75 s of the relay's CPU is 35 us a row; at 24,000 rows/s, 0.84 of a core
    results = {"relay": summarise("relay", [run(20_000, 2.0), run(24_000, 1.75), run(30_000, 1.5)])}
    derive(results)
    figures = {name: f["value"] for name, f in results["figures"].items()}

    assert figures["relay_rows_per_s"] == 24_000
    assert round(figures["relay_alone_cpu_us_relay"]) == 35
    assert round(figures["relay_alone_cpu_us_postgres"]) == 10
    assert round(figures["relay_alone_cpu_us_total"]) == 47  # relay, postgres and broker
    assert round(figures["relay_alone_relay_cores"], 2) == 0.84
    assert results["figures"]["relay_alone_relay_cores"]["target"] is None
