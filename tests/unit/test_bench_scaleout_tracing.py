"""The scale-out and tracing figures' own logic: efficiency, CPU caps' paths, span counting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import cpu_caps
from bench.otlp_sink import span_count
from bench.scaleout import (
    bound,
    cores_used,
    efficiency,
    even,
    scaleout_figures,
    scaleout_warnings,
    throttled_share,
)
from bench.tracing import percent_change, tracing_figures

MOUNTS = """\
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_efficiency_is_each_rate_over_n_times_the_rate_of_one() -> None:
    assert efficiency({1: 1000.0, 2: 1800.0, 3: 2100.0}) == {1: 1.0, 2: 0.9, 3: 0.7}


def test_an_even_spread_needs_every_consumer_and_every_partition() -> None:
    assert even([4, 4, 4], 3)
    assert not even([0, 0, 12], 3)  # the uniform assignor's pick that led to the range one
    assert not even([6, 6], 3)  # a member has not joined yet
    assert not even([4, 4], 2)  # partitions not held by anyone yet


def test_throttled_share_is_a_percent_of_the_periods_in_between() -> None:
    earlier = {"nr_periods": 100, "nr_throttled": 10, "throttled_time": 0}
    later = {"nr_periods": 300, "nr_throttled": 60, "throttled_time": 5}
    assert throttled_share(earlier, later) == 25.0
    assert throttled_share(later, later) == 0.0


def test_cores_used_sums_the_consumers_and_leaves_other_peoples_work_apart() -> None:
    used = {
        "consumer-1": 3.0,
        "consumer-2": 3.0,
        "postgres": 2.0,
        "broker": 1.0,
        "bench": 1.0,
        "machine": 18.0,
    }
    assert cores_used(used, elapsed=10.0) == pytest.approx(
        {"consumers": 0.6, "postgres": 0.2, "broker": 0.1, "other": 0.8}
    )


def test_scaleout_figures_name_each_n_and_its_efficiency() -> None:
    def run(rate: float) -> dict[str, Any]:
        return {"cmds_per_s": rate, "consumers_throttled_pct": 90.0, "cores": {"registry": 0.0}}

    figures = scaleout_figures({"consumers_1": run(1000.0), "consumers_2": run(1500.0)})
    assert figures["scaleout_cmds_per_s_2_consumers"] == 1500.0
    assert figures["scaleout_efficiency_2_consumers"] == 0.75
    assert "scaleout_registry_cores_2_consumers" not in figures


def test_the_bound_of_a_run_is_the_caps_the_busy_machine_or_waits_on_the_servers() -> None:
    capped = {"consumers_throttled_pct": 80.0, "cores": {"consumers": 0.66, "other": 0.1}}
    busy = {"consumers_throttled_pct": 5.0, "cores": {"consumers": 0.3, "other": 1.6}}
    waiting = {"consumers_throttled_pct": 5.0, "cores": {"consumers": 0.3, "postgres": 0.4}}
    assert bound(capped, cpus=2).startswith("the consumers' CPU caps")
    assert bound(busy, cpus=2).startswith("the machine: 1.90 of 2 cores busy, 1.60 of them")
    assert bound(waiting, cpus=2).startswith("waits on the servers")
    warnings = scaleout_warnings({"consumers_1": capped, "consumers_2": busy}, cpus=2)
    assert len(warnings) == 1
    assert warnings[0].startswith("scaleout with 2 consumer(s) was bound by the machine")


def test_quota_is_the_share_of_the_period_and_refuses_no_cpu() -> None:
    assert cpu_caps.quota_us(0.33) == 33_000
    assert cpu_caps.quota_us(2) == 200_000
    assert cpu_caps.quota_us(0.001) == 1000  # the kernel's smallest
    with pytest.raises(ValueError, match="above 0"):
        cpu_caps.quota_us(0)


def test_the_v1_cpu_mount_is_found_and_cpuacct_or_cgroup2_are_not_taken_for_it() -> None:
    assert cpu_caps.cpu_mount(MOUNTS) == Path("/sys/fs/cgroup/cpu")
    assert cpu_caps.cpu_mount(MOUNTS.replace("rw,relatime,cpu 0", "rw,cpu,cpuacct 0")) == Path(
        "/sys/fs/cgroup/cpu"
    )
    assert cpu_caps.cpu_mount(MOUNTS.splitlines()[2]) is None


def test_a_process_cpu_group_is_read_from_its_proc_cgroup() -> None:
    text = "4:memory:/process_api/1f\n2:cpuacct:/\n1:cpu:/some/group\n0::/"
    assert cpu_caps.cpu_path(text) == "/some/group"
    assert cpu_caps.cpu_path("1:cpu,cpuacct:/a\n") == "/a"
    assert cpu_caps.cpu_path("0::/\n") == "/"


def test_a_cap_writes_its_quota_and_period_under_the_benchmarks_own_group(tmp_path: Path) -> None:
    caps = cpu_caps.CpuCaps(tmp_path, owner=4242)
    group = caps.cap("consumer-1", 0.33)
    assert group == tmp_path / "allocation-bench-cap-4242" / "consumer-1"
    assert (group / "cpu.cfs_quota_us").read_text() == "33000"
    assert (group / "cpu.cfs_period_us").read_text() == "100000"
    assert (group / "cpu.shares").read_text() == "8192"
    (group / "cgroup.procs").write_text("17\n18\n")
    assert "consumer-1: cpu.cfs_quota_us=33000 cpu.cfs_period_us=100000" in caps.describe()[0]
    assert caps.describe()[0].endswith("pids 17 18")


def test_only_groups_of_benchmarks_no_longer_running_are_stale(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for owner in (os.getpid(), dead.pid):
        (tmp_path / f"allocation-bench-cap-{owner}").mkdir()
    (tmp_path / "allocation-bench-cap-notapid").mkdir()
    (tmp_path / "someone-else").mkdir()
    assert cpu_caps.stale_roots(tmp_path) == [tmp_path / f"allocation-bench-cap-{dead.pid}"]


def test_caps_are_unavailable_with_a_reason_when_no_cpu_controller_is_mounted(
    tmp_path: Path,
) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS.splitlines()[2])
    with (
        pytest.raises(cpu_caps.CapsUnavailable, match="no cgroup v1 `cpu` controller"),
        cpu_caps.capped(mounts),
    ):
        pass


def test_caps_are_unavailable_with_a_reason_when_no_group_can_be_made(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup {tmp_path / 'absent' / 'cpu'} cgroup rw,cpu 0 0\n")
    with (
        pytest.raises(cpu_caps.CapsUnavailable, match="cannot make a cgroup under"),
        cpu_caps.capped(mounts),
    ):
        pass


def test_the_cpu_stat_of_a_v1_group_is_read_by_name() -> None:
    text = "nr_periods 12\nnr_throttled 3\nthrottled_time 4500\n"
    assert cpu_caps.parse_stat(text) == {
        "nr_periods": 12,
        "nr_throttled": 3,
        "throttled_time": 4500,
    }


def test_the_sink_counts_the_spans_of_an_otlp_export() -> None:
    request = ExportTraceServiceRequest()
    for spans in (2, 3):
        scope = request.resource_spans.add().scope_spans.add()
        for n in range(spans):
            scope.spans.add().name = f"span {n}"
    assert span_count(request.SerializeToString()) == 5
    assert span_count(b"") == 0


def test_tracing_figures_give_both_sides_and_what_the_exporter_adds() -> None:
    def side(rate: float, consumer: float) -> dict[str, Any]:
        return {
            "cmds_per_s": rate,
            "cpu_us_per_cmd": {"consumer": consumer, "relay": 40.0, "total": 200.0 + consumer},
        }

    figures = tracing_figures(
        {
            "off": side(5000.0, 70.0),
            "on": side(4000.0, 100.0),
            "spans_exported": 90,
            "spans_expected": 100,
            "noop_span_us_per_cmd": 1.5,
        }
    )
    assert figures["tracing_on_vs_off_cmds_per_s_pct"] == -20.0
    assert figures["tracing_exporter_adds_cpu_us_per_cmd_consumer"] == 30.0
    assert figures["tracing_exporter_adds_cpu_us_per_cmd_relay"] == 0.0
    assert figures["tracing_spans_exported_pct"] == 90.0
    assert percent_change(200.0, 250.0) == 25.0


def test_a_skipped_scaleout_says_why_in_the_warnings_and_gives_no_figure() -> None:
    from bench.__main__ import derive

    results: dict[str, Any] = {
        "scaleout": {"runs": [{"skipped": "no cgroup"}], "skipped": "no cgroup"}
    }
    derive(results)
    assert results["warnings"] == ["scaleout: SKIPPED, no CPU caps could be made: no cgroup"]
    assert not [name for name in results["figures"] if name.startswith("scaleout")]
