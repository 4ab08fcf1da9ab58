import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from allocation.entrypoints.health import Health, serve
from testkit.processes import free_port


def get(port: int, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


@pytest.fixture
def served() -> Iterator[tuple[Health, int]]:
    health, port = Health(stall_s=0.5), free_port()
    server = serve(health, "127.0.0.1", port)
    assert server is not None
    yield health, port
    server.shutdown()


def test_readiness_follows_what_the_process_reports(served: tuple[Health, int]) -> None:
    health, port = served
    assert get(port, "/readyz") == (503, {"status": "unavailable", "reason": "starting"})
    health.ready("3 partitions assigned")
    assert get(port, "/readyz") == (200, {"status": "ok", "reason": "3 partitions assigned"})
    health.not_ready("consumption paused: relation products does not exist")
    assert get(port, "/readyz")[0] == 503


def test_a_loop_that_stops_turning_is_not_live(served: tuple[Health, int]) -> None:
    health, port = served
    health.beat()
    assert get(port, "/livez")[0] == 200
    health._last_beat -= 1.0  # as if the loop had been stuck for a second
    status, body = get(port, "/livez")
    assert status == 503
    assert "has not turned" in body["reason"]


def test_metrics_are_served_in_prometheus_text(served: tuple[Health, int]) -> None:
    _, port = served
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert b"python_info" in answer.read()


def test_port_zero_serves_nothing() -> None:
    assert serve(Health(), "127.0.0.1", 0) is None
