"""The in-memory reference implementations and fakes honour the port contracts."""

import pytest

from allocation.domain.model import Allocations
from tests import contracts
from tests.fakes import FakeAllocationsView, FakeInbox, FakeRepository


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


class TestFakeAllocationsView(contracts.AllocationsViewContract):
    @pytest.fixture
    def port(self) -> FakeAllocationsView:
        return FakeAllocationsView()
