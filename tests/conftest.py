"""Shared fixtures. Markers are strict: every test is unit, integration or e2e."""

from __future__ import annotations

import uuid

import pytest


def random_suffix() -> str:
    return uuid.uuid4().hex[:6]


def random_sku(name: str = "") -> str:
    return f"sku-{name}-{random_suffix()}"


def random_batchref(name: str | int = "") -> str:
    return f"batch-{name}-{random_suffix()}"


def random_orderid(name: str | int = "") -> str:
    return f"order-{name}-{random_suffix()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test's kind follows from its folder, so no test can run unclassified.
    for item in items:
        for kind in ("unit", "integration", "e2e"):
            if f"/tests/{kind}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, kind))
