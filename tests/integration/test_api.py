"""The HTTP API against the real PostgreSQL, through FastAPI's test client."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from allocation.adapters import tables
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


def post_batch(client: TestClient, ref: str, sku: str, qty: int, eta: date | None) -> None:
    body = {"ref": ref, "sku": sku, "qty": qty, "eta": eta.isoformat() if eta else None}
    response = client.post("/batches", json=body)
    assert response.status_code == 201, response.text


def test_happy_path_allocates_to_the_earliest_batch_and_lists_it(client: TestClient) -> None:
    sku, othersku = random_sku(), random_sku("other")
    earlybatch, laterbatch, otherbatch = random_batchref(1), random_batchref(2), random_batchref(3)
    post_batch(client, laterbatch, sku, 100, date.today() + timedelta(days=2))
    post_batch(client, earlybatch, sku, 100, date.today() + timedelta(days=1))
    post_batch(client, otherbatch, othersku, 100, None)
    orderid = random_orderid()

    response = client.post("/allocate", json={"orderid": orderid, "sku": sku, "qty": 3})

    assert response.status_code == 201
    assert response.json()["batchref"] == earlybatch
    listed = client.get(f"/allocations/{orderid}")
    assert listed.status_code == 200
    assert listed.json() == [{"sku": sku, "batchref": earlybatch}]


def test_allocations_reach_the_outbox(client: TestClient, engine: Engine) -> None:
    sku = random_sku()
    post_batch(client, random_batchref(), sku, 10, None)
    client.post(
        "/allocate",
        json={"orderid": random_orderid(), "sku": sku, "qty": 3},
        headers={"x-correlation-id": "corr-42"},
    )
    with engine.connect() as connection:
        rows = connection.execute(select(tables.outbox).where(tables.outbox.c.key == sku)).all()
    assert [(r.event_type, r.correlation_id) for r in rows] == [("Allocated", "corr-42")]
    assert rows[0].causation_id.startswith("http:")


def test_unknown_sku_is_a_400_with_a_message(client: TestClient) -> None:
    sku = random_sku()
    response = client.post("/allocate", json={"orderid": random_orderid(), "sku": sku, "qty": 1})
    assert response.status_code == 400
    assert response.json()["detail"] == f"Invalid sku {sku}"


@pytest.mark.parametrize(
    "body",
    [
        {"orderid": "o1", "sku": "LAMP", "qty": 0},
        {"orderid": "o1", "sku": "LAMP", "qty": -3},
        {"orderid": "o1", "sku": "LAMP", "qty": "3"},
        {"orderid": "o1", "sku": "LAMP", "qty": 1.5},
        {"orderid": "", "sku": "LAMP", "qty": 1},
        {"orderid": "o1", "sku": "LAMP"},
        {"orderid": "o1", "sku": "LAMP", "qty": 1, "extra": True},
    ],
)
def test_invalid_allocate_requests_are_a_400_naming_the_field(
    client: TestClient, body: dict[str, object]
) -> None:
    response = client.post("/allocate", json=body)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_malformed_json_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/allocate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_out_of_stock_is_a_409_without_batchref(client: TestClient) -> None:
    sku = random_sku()
    post_batch(client, random_batchref(), sku, 5, None)
    response = client.post("/allocate", json={"orderid": random_orderid(), "sku": sku, "qty": 6})
    assert response.status_code == 409
    assert response.json()["batchref"] is None
    assert "out of stock" in response.json()["detail"]


def test_a_duplicate_batch_is_a_409(client: TestClient) -> None:
    ref = random_batchref()
    post_batch(client, ref, random_sku(), 5, None)
    response = client.post("/batches", json={"ref": ref, "sku": random_sku(), "qty": 5})
    assert response.status_code == 409
    assert ref in response.json()["detail"]


def test_an_order_without_allocations_is_a_404(client: TestClient) -> None:
    response = client.get(f"/allocations/{random_orderid()}")
    assert response.status_code == 404


def test_healthz_checks_the_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_concurrent_requests_each_get_their_own_answer_and_apply_once(
    client: TestClient, engine: Engine
) -> None:
    # Concurrent POSTs share transactions (group commit); a rejected one must not take the
    # others of its transaction down with it, nor get any of them applied twice.
    sku = random_sku()
    post_batch(client, random_batchref(), sku, 50, None)
    asks = [(random_orderid(i), sku) for i in range(60)]
    asks += [(random_orderid(f"bad{i}"), random_sku("unknown")) for i in range(5)]

    def ask(order: tuple[str, str]) -> int:
        body = {"orderid": order[0], "sku": order[1], "qty": 1}
        return client.post("/allocate", json=body).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = dict(zip(asks, pool.map(ask, asks), strict=True))

    assert sorted(codes[a] for a in asks[60:]) == [400] * 5
    assert sorted(codes[a] for a in asks[:60]) == [201] * 50 + [409] * 10
    with engine.connect() as connection:
        lines = connection.execute(
            select(tables.allocations.c.orderid).where(tables.allocations.c.sku == sku)
        ).all()
    allocated = {order for (order, _), code in codes.items() if code == 201}
    assert sorted(orderid for (orderid,) in lines) == sorted(allocated)
