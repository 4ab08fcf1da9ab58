"""The benchmark's own arithmetic: medians, targets, CPU per command."""

from __future__ import annotations

from bench.cpu import per_unit_us
from bench.report import figure
from bench.stats import medians


def test_medians_go_key_by_key_into_nested_results_and_keep_names() -> None:
    runs = [
        {"rate": 1.0, "cpu": {"broker": 5.0}, "method": "cgroup2"},
        {"rate": 3.0, "cpu": {"broker": 1.0}, "method": "cgroup2"},
        {"rate": 2.0, "cpu": {"broker": 9.0}, "method": "cgroup2"},
    ]
    assert medians(runs) == {"rate": 2.0, "cpu": {"broker": 5.0}, "method": "cgroup2"}


def test_a_figure_carries_its_target_and_whether_it_was_met() -> None:
    assert figure(300.0, "cpu_us_per_cmd_total") | {"value": 0} == {
        "value": 0,
        "target": 250,
        "op": "<=",
        "met": False,
        "issue": 14,
    }
    assert figure(9_000.0, "consumer_cmds_per_s")["met"] is True
    assert figure(5.0, "commit_ceiling_per_s")["met"] is None


def test_cpu_per_command_totals_the_pipeline_and_leaves_the_rest_of_the_machine_apart() -> None:
    used = {"broker": 0.2, "consumer": 0.1, "bench": 0.05, "machine": 0.5}
    us = per_unit_us(used, 1_000)
    assert round(us["total"]) == 300
    assert round(us["bench"]) == 50
    assert round(us["other"]) == 150
    assert "machine" not in us
