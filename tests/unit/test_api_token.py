"""API_TOKEN: unset, the API has no authentication; set, a bearer token is required."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.entrypoints.api import create_app
from tests.fakes import FakeUnitOfWork

TOKEN = "s3cret-token-value"
BATCH = {"ref": "b1", "sku": "LAMP", "qty": 5}


def client(**settings: object) -> TestClient:
    uow = FakeUnitOfWork()
    return TestClient(create_app(bootstrap(settings_from(**settings), uow_factory=lambda: uow)))


def test_without_api_token_the_api_needs_no_authentication() -> None:
    assert client().post("/batches", json=BATCH).status_code == 201


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, None),
        ("Bearer wrong-token", 'error="invalid_token"'),
        (f"Basic {TOKEN}", None),
        ("Bearer ", None),
        (TOKEN, None),
    ],
)
def test_with_api_token_a_request_without_it_is_a_401_with_a_bearer_challenge(
    authorization: str | None, error: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answer = client(api_token=TOKEN).post("/batches", json=BATCH, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert (error in answer.headers["WWW-Authenticate"]) if error else True
    assert "bearer token" in answer.json()["detail"]
    assert TOKEN not in answer.text


def test_with_api_token_the_right_bearer_token_is_let_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = client(api_token=TOKEN)
    caplog.set_level(logging.DEBUG)

    created = api.post("/batches", json=BATCH, headers={"Authorization": f"bearer {TOKEN}"})
    read = api.get("/allocations/nobody", headers={"Authorization": f"Bearer {TOKEN}"})

    assert created.status_code == 201
    assert read.status_code == 404  # through to the route: no such order
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz", "/metrics"])
def test_with_api_token_the_probes_and_metrics_stay_open(path: str) -> None:
    assert client(api_token=TOKEN).get(path).status_code == 200


def test_with_api_token_the_openapi_document_needs_the_token_too() -> None:
    assert client(api_token=TOKEN).get("/openapi.json").status_code == 401
