"""The floor under the HTTP figures: its bounds' arithmetic, and the no-op server it loads."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from bench import floor


def measured(noop_p50_ms: float = 0.2, group_1_ms: float = 2.8, group_16_ms: float = 8.0) -> Any:
    load = {"requests_per_s": 8000.0, "p50_ms": 1.0, "server_cpu_us_per_request": 110.0}
    return {
        "pg_round_trip_us": 160.0,
        "pg_durable_commit_us": 470.0,
        "http_noop": {"clients_16": load, "clients_1": {**load, "p50_ms": noop_p50_ms}},
        "uow_groups": {
            "group_1": {"wall_ms": group_1_ms, "cpu_ms": 1.4},
            "group_16": {"wall_ms": group_16_ms, "cpu_ms": 4.8},
        },
    }


def test_a_lone_request_takes_at_least_the_noop_request_and_a_group_of_one() -> None:
    values = floor.floor_figures(measured(noop_p50_ms=0.25, group_1_ms=2.75), http=None)
    assert values["http_p50_floor_ms_1_client"] == pytest.approx(3.0)
    assert values["uow_group_1_ms"] == 2.75


def test_the_worker_answers_at_most_a_group_of_16_per_group_time() -> None:
    values = floor.floor_figures(measured(group_16_ms=8.0), http=None)
    assert values["http_worker_ceiling_requests_per_s_16_clients"] == pytest.approx(2000)
    assert "http_cpu_ceiling_requests_per_s_16_clients" not in values  # no HTTP figures


def test_the_cpu_ceiling_divides_the_cores_by_the_services_cpu_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(floor, "_cores", lambda: 2)
    # The benchmark's own reading of the events is not the service's.
    http = {"clients_16": {"cpu_us_per_request": {"total": 1100.0, "bench": 100.0}}}
    values = floor.floor_figures(measured(), http)
    assert values["http_cpu_ceiling_requests_per_s_16_clients"] == pytest.approx(2000)


def test_the_noop_server_answers_a_post_as_the_api_would_shape_it() -> None:
    with floor._noop_server() as (port, cpu_s):
        before = cpu_s()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"orderid": "o-1", "sku": "LAMP", "qty": 1})
        served = 0
        # Its own CPU, read from /proc in clock ticks, moves as it serves (a tick is 10 ms).
        while cpu_s() == before and served < 5000:
            connection.request("POST", "/allocate", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 201
            assert json.loads(response.read()) == {"batchref": "LAMP-b", "detail": None}
            served += 1
        connection.close()
        assert cpu_s() > before
