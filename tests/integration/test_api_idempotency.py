"""HTTP Idempotency-Key against the real PostgreSQL: a retry gets the first answer, once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text, update

from allocation.adapters import tables
from allocation.adapters.responses import prune_idempotency_keys
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


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def outbox_rows(engine: Engine, sku: str) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(tables.outbox).where(tables.outbox.c.key == sku)
        return int(connection.execute(query).scalar_one())


def test_a_retried_batch_gets_the_first_answer_not_a_conflict(client: TestClient) -> None:
    body, key = {"ref": random_batchref(), "sku": random_sku(), "qty": 10}, new_key()

    first = client.post("/batches", json=body, headers=key)
    again = client.post("/batches", json=body, headers=key)
    unkeyed = client.post("/batches", json=body)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() == {"ref": body["ref"]}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert unkeyed.status_code == 409  # without a key, as before: a second command


def test_a_retried_allocation_is_applied_once_and_answered_alike(
    client: TestClient, engine: Engine
) -> None:
    sku, ref, key = random_sku(), random_batchref(), new_key()
    client.post("/batches", json={"ref": ref, "sku": sku, "qty": 10})
    line = {"orderid": random_orderid(), "sku": sku, "qty": 6}

    answers = [client.post("/allocate", json=line, headers=key) for _ in range(3)]

    assert [(a.status_code, a.json()) for a in answers] == [(201, answers[0].json())] * 3
    assert answers[0].json()["batchref"] == ref
    assert outbox_rows(engine, sku) == 1
    # The batch still has room for 4 more: the retries did not take any.
    assert (
        client.post("/allocate", json={**line, "orderid": random_orderid(), "qty": 4}).json()[
            "batchref"
        ]
        == ref
    )


def test_an_out_of_stock_answer_is_kept_too(client: TestClient) -> None:
    sku, key = random_sku(), new_key()
    client.post("/batches", json={"ref": random_batchref(), "sku": sku, "qty": 1})
    line = {"orderid": random_orderid(), "sku": sku, "qty": 5}

    first = client.post("/allocate", json=line, headers=key)
    again = client.post("/allocate", json=line, headers=key)

    assert (first.status_code, again.status_code) == (409, 409)
    assert again.json() == first.json()


def test_the_same_key_with_another_body_is_refused_and_applies_nothing(
    client: TestClient, engine: Engine
) -> None:
    sku, key = random_sku(), new_key()
    client.post("/batches", json={"ref": random_batchref(), "sku": sku, "qty": 10})
    line = {"orderid": random_orderid(), "sku": sku, "qty": 1}
    client.post("/allocate", json=line, headers=key)

    other = client.post("/allocate", json={**line, "qty": 2}, headers=key)
    other_path = client.post(
        "/batches", json={"ref": random_batchref(), "sku": sku, "qty": 1}, headers=key
    )

    assert (other.status_code, other_path.status_code) == (422, 422)
    assert "different request" in other.json()["detail"]
    assert outbox_rows(engine, sku) == 1


def rejections(engine: Engine, key: str) -> list[tuple[str | None, dict[str, object]]]:
    with engine.connect() as connection:
        query = select(tables.outbox.c.causation_id, tables.outbox.c.payload).where(
            tables.outbox.c.key == key, tables.outbox.c.event_type == "CommandRejected"
        )
        return [(row.causation_id, row.payload) for row in connection.execute(query)]


def test_a_rejected_request_is_answered_alike_on_retry_and_rejected_once(
    client: TestClient, engine: Engine
) -> None:
    """A business rejection is the request's outcome: kept with its CommandRejected event."""
    sku, key = random_sku(), new_key()
    line = {"orderid": random_orderid(), "sku": sku, "qty": 1}
    first = client.post("/allocate", json=line, headers=key)
    assert (first.status_code, first.json()) == (400, {"detail": f"Invalid sku {sku}"})
    client.post("/batches", json={"ref": random_batchref(), "sku": sku, "qty": 10})
    again = client.post("/allocate", json=line, headers=key)
    assert (again.status_code, again.json()) == (400, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    [(causation, payload)] = rejections(engine, sku)
    assert causation == f"http:{key['Idempotency-Key']}"
    assert (payload["reason"], payload["source_topic"]) == ("InvalidSku", None)
    assert client.post("/allocate", json=line, headers=new_key()).status_code == 201


def test_an_unkeyed_rejected_request_is_answered_4xx_and_sent_as_a_rejection(
    client: TestClient, engine: Engine
) -> None:
    sku, ref = random_sku(), random_batchref()
    client.post("/batches", json={"ref": ref, "sku": sku, "qty": 10})
    again = client.post("/batches", json={"ref": ref, "sku": sku, "qty": 10})
    assert again.status_code == 409
    [(causation, payload)] = rejections(engine, sku)
    assert str(causation).startswith("http:")
    assert (payload["reason"], payload["command_type"]) == ("DuplicateBatchRef", "CreateBatch")


def test_concurrent_retries_of_one_key_apply_once(client: TestClient, engine: Engine) -> None:
    sku, ref = random_sku(), random_batchref()
    client.post("/batches", json={"ref": ref, "sku": sku, "qty": 1000})
    keys = [new_key() for _ in range(5)]
    answers: list[httpx.Response] = []
    start = threading.Barrier(4 * len(keys))

    def send(key: dict[str, str], n: int) -> None:
        start.wait(timeout=30)
        line = {"orderid": f"order-{key['Idempotency-Key']}", "sku": sku, "qty": 1}
        answers.append(client.post("/allocate", json=line, headers=key))

    threads = [threading.Thread(target=send, args=(k, n)) for k in keys for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(a.status_code for a in answers) == [201] * 20
    assert outbox_rows(engine, sku) == len(keys)


def test_after_its_retention_a_keys_answer_is_gone_but_it_still_applies_nothing(
    client: TestClient, engine: Engine
) -> None:
    sku, key = random_sku(), new_key()
    client.post("/batches", json={"ref": random_batchref(), "sku": sku, "qty": 10})
    line = {"orderid": random_orderid(), "sku": sku, "qty": 1}
    client.post("/allocate", json=line, headers=key)
    kept = tables.idempotency_keys
    with engine.begin() as connection:
        connection.execute(
            update(kept)
            .where(kept.c.message_id == f"http:{key['Idempotency-Key']}")
            .values(created_at=func.now() - text("interval '25 hours'"))
        )
        assert prune_idempotency_keys(connection, timedelta(hours=24)) >= 1

    late = client.post("/allocate", json=line, headers=key)

    assert late.status_code == 409
    assert "no longer kept" in late.json()["detail"]
    assert outbox_rows(engine, sku) == 1


def test_a_malformed_key_is_a_bad_request(client: TestClient) -> None:
    body = {"ref": random_batchref(), "sku": random_sku(), "qty": 1}
    for bad in ("x" * 256, "has space"):
        response = client.post("/batches", json=body, headers={"Idempotency-Key": bad})
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["detail"]


def test_a_batch_shows_the_version_a_quantity_change_may_expect(client: TestClient) -> None:
    sku, ref = random_sku(), random_batchref()
    client.post("/batches", json={"ref": ref, "sku": sku, "qty": 10})
    client.post("/allocate", json={"orderid": random_orderid(), "sku": sku, "qty": 3})

    shown = client.get(f"/batches/{ref}")

    assert shown.status_code == 200
    assert shown.json() == {
        "ref": ref,
        "sku": sku,
        "qty": 10,
        "eta": None,
        "version": 1,
        "allocated": 3,
    }
    assert client.get(f"/batches/{random_batchref()}").status_code == 404
