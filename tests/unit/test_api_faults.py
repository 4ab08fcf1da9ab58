"""The HTTP API answers a fault of its servers with a 503 the client may retry."""

from __future__ import annotations

from fastapi.testclient import TestClient

from allocation.adapters.faults import RegistryUnavailable
from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.entrypoints.api import create_app
from allocation.service_layer.ports import OutboxEntry
from tests.fakes import FakeOutbox, FakeUnitOfWork


class RegistryDownOutbox(FakeOutbox):
    def add(self, entries: list[OutboxEntry]) -> None:
        if entries:
            raise RegistryUnavailable("schema registry: connection refused")


def test_a_registry_that_cannot_name_the_schema_version_is_a_503() -> None:
    uow = FakeUnitOfWork()
    uow.outbox = RegistryDownOutbox()
    app = create_app(bootstrap(settings_from(), uow_factory=lambda: uow))
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/batches", json={"ref": "b1", "sku": "LAMP", "qty": 5}).status_code == 201

    response = client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 1})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
