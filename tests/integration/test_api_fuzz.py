"""The HTTP API fuzzed from its own OpenAPI description: whatever arrives, never a 5xx."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine

from allocation.bootstrap import bootstrap
from allocation.config import Settings
from allocation.entrypoints.api import create_app

# `make chaos` fuzzes longer (CHAOS_SIZE=full); `make test` keeps it short.
EXAMPLES = 1000 if os.environ.get("CHAOS_SIZE") == "full" else 150
OPERATIONS = ["POST /batches", "POST /allocate", "GET /allocations/{orderid}", "GET /healthz"]


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_request_gets_a_server_error(settings: Settings, engine: Engine, label: str) -> None:
    application = bootstrap(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(application))
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the OpenAPI description"
    calls = []

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    def never_a_server_error(case: schemathesis.Case) -> None:
        calls.append(case.call_and_validate(checks=[not_a_server_error]).status_code)

    try:
        never_a_server_error()
    finally:
        application.close()
    assert calls
    assert all(status < 500 for status in calls)
