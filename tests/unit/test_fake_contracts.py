"""The in-memory reference implementations and fakes honour the port contracts."""

from collections.abc import Callable

import pytest

from allocation.domain.model import Allocations, Product
from allocation.service_layer.ports import OutboxEntry
from tests import contracts
from tests.fakes import (
    FakeAllocationsView,
    FakeInbox,
    FakeOutbox,
    FakeRepository,
    FakeResponses,
    FakeWaiting,
)


class TestInMemoryAllocations(contracts.AllocationsContract):
    @pytest.fixture
    def port(self) -> Allocations:
        return Allocations()


class TestFakeRepository(contracts.RepositoryContract):
    @pytest.fixture
    def port(self) -> FakeRepository:
        return FakeRepository()


class TestFakeInbox(contracts.InboxContract):
    @pytest.fixture
    def port(self) -> FakeInbox:
        return FakeInbox()


class TestFakeResponses(contracts.ResponsesContract):
    @pytest.fixture
    def port(self) -> FakeResponses:
        return FakeResponses()


class TestFakeAllocationsView(contracts.AllocationsViewContract):
    @pytest.fixture
    def port(self) -> FakeAllocationsView:
        return FakeAllocationsView()


class FakeOutboxWorld:
    def __init__(self) -> None:
        self.outbox = FakeOutbox()

    def write(self, entries: list[OutboxEntry], commit: bool) -> None:
        self.outbox.add(entries)
        if commit:
            self.outbox.committed.extend(self.outbox.staged)
        self.outbox.staged.clear()

    def to_publish(self, keys: set[str]) -> list[OutboxEntry]:
        return [e for e in self.outbox.committed if e.key in keys]


class TestFakeOutbox(contracts.OutboxContract):
    @pytest.fixture
    def world(self) -> FakeOutboxWorld:
        return FakeOutboxWorld()


class TestFakeWaiting(contracts.WaitingContract):
    @pytest.fixture
    def products(self) -> FakeRepository:
        return FakeRepository()

    @pytest.fixture
    def port(self, products: FakeRepository) -> FakeWaiting:
        return FakeWaiting(products)

    @pytest.fixture
    def add_product(self, products: FakeRepository) -> Callable[[str], None]:
        return lambda sku: products.add(Product(sku, []))
