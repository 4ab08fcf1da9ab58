"""The API's operator endpoints: request metrics by route template, liveness, readiness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from allocation.bootstrap import bootstrap
from allocation.config import Settings
from allocation.entrypoints.api import create_app
from tests.conftest import random_batchref, random_orderid, random_sku


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    application = bootstrap(settings)
    with TestClient(create_app(application)) as test_client:
        yield test_client
    application.close()


def sample(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_requests_are_counted_by_route_template_and_status(client: TestClient) -> None:
    route = {"method": "GET", "route": "/allocations/{orderid}", "status": "404"}
    before = sample(client, "http_requests_total", **route)
    created = {"method": "POST", "route": "/batches", "status": "201"}
    before_created = sample(client, "http_requests_total", **created)

    for _ in range(3):
        assert client.get(f"/allocations/{random_orderid()}").status_code == 404
    body = {"ref": random_batchref(), "sku": random_sku(), "qty": 5, "eta": None}
    assert client.post("/batches", json=body).status_code == 201

    assert sample(client, "http_requests_total", **route) == before + 3
    assert sample(client, "http_requests_total", **created) == before_created + 1
    timed = {"method": "POST", "route": "/batches"}
    assert sample(client, "http_request_duration_seconds_count", **timed) >= 1


def test_live_and_ready_while_the_database_answers(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["reason"] == "the database answers"


def test_not_ready_when_the_database_is_unreachable(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"database_url": "postgresql://allocation:allocation@127.0.0.1:1/allocation"}
    )
    application = bootstrap(unreachable)
    try:
        with TestClient(create_app(application)) as client:
            answer = client.get("/readyz")
        assert answer.status_code == 503
        assert "database unreachable" in answer.json()["reason"]
    finally:
        application.close()
