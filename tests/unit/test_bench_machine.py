"""A run says how quick the machine was at its start and end, and whether its servers stayed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench import machine
from bench.__main__ import derive, measure
from bench.scenarios import QUICK
from bench.servers import Servers


def servers(broker: int = 11, registry: int = 12, postmaster: int = 13) -> Servers:
    return Servers(Path("/nowhere"), broker, registry, postmaster, Path("/nowhere/pg"))


def test_the_yardstick_is_sampled_in_its_own_interpreter_while_the_block_runs() -> None:
    assert machine._workload() == machine._workload()  # the same work each time
    with machine.yardstick(every_s=0.05) as samples:
        time.sleep(1.0)
        assert samples == []  # filled in at the end
    assert len(samples) >= 2
    assert all(0 < ms < 10_000 for ms in samples)


def test_the_runs_speed_is_the_median_and_a_wide_spread_is_flagged() -> None:
    assert machine.speed_figures([40.0, 80.0, 45.0]) == {"machine_yardstick_ms": 45.0}
    assert machine.speed_figures([]) == {}
    assert machine.speed_warnings([40.0, 50.0, 59.0]) == []
    (warning,) = machine.speed_warnings([40.0, 40.0, 40.0, 80.0, 80.0, 80.0])
    assert "10th percentile was 40 ms and its 90th 80 (6 samples)" in warning
    # A lone fast or slow sample among many does not make the run two machines.
    steady = [50.0] * 18 + [30.0, 90.0]
    assert machine.speed_warnings(steady) == []


def test_a_server_whose_pid_changed_is_named() -> None:
    assert machine.moved(servers(), servers()) == []
    assert machine.moved(servers(), servers(broker=21, postmaster=23)) == [
        "broker pid 11 is now 21",
        "postmaster pid 13 is now 23",
    ]


def test_servers_gone_since_the_start_are_named_and_none_at_the_start_are_no_change() -> None:
    (gone,) = machine.restarted(servers())
    assert "STACK_HOME=/nowhere" in gone
    assert machine.restarted(None) == []


def test_the_run_reports_the_yardstick_and_warns_of_restarted_servers() -> None:
    results: dict[str, Any] = {
        "machine": {
            "yardstick_ms": [40.0, 40.0, 50.0, 80.0, 80.0],
            "servers_restarted": ["broker pid 11 is now 21"],
        }
    }
    derive(results)
    assert results["figures"]["machine_yardstick_ms"]["value"] == 50.0
    speed, servers_warning = results["warnings"]
    assert speed.startswith("machine: the yardstick's 10th percentile was 40 ms")
    assert servers_warning.startswith("servers: restarted during the run (broker pid 11 is now 21)")


def test_a_step_that_fails_after_the_servers_restarted_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Database:
        servers = servers()

    class Opened:
        def __enter__(self) -> Database:
            return Database()

        def __exit__(self, *_: object) -> None:
            return None

    def lost_events(*_: object) -> None:
        raise TimeoutError("0 of 20000 events after 600s")

    monkeypatch.setattr("bench.__main__.bench_database", Opened)
    monkeypatch.setattr("bench.alone.consumer_only", lost_events)
    monkeypatch.setattr(machine, "restarted", lambda _: ["broker pid 11 is now 21"])
    with pytest.raises(RuntimeError, match="restarted during the run") as raised:
        measure(QUICK, {"consumer"}, None)
    assert isinstance(raised.value.__cause__, TimeoutError)
