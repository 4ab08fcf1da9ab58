"""The README's limits, the same in the domain, the HTTP API and ``allocation produce``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import psycopg2
import pytest
from fastapi.testclient import TestClient
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc

from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.domain import commands, model
from allocation.domain.errors import InvalidQuantity, InvalidValue
from allocation.entrypoints.api import create_app
from allocation.entrypoints.cli import console
from allocation.entrypoints.cli.common import ToolError
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, Envelope
from tests.fakes import FakeUnitOfWork

CLEF = "\U0001d11e"  # four bytes of UTF-8, one character
TOO_LONG = CLEF * 64  # 64 characters, 256 bytes


def test_identifiers_are_limited_in_bytes_of_utf8_not_characters() -> None:
    assert model.require_text("sku", "x" * 255) == "x" * 255
    assert model.require_text("sku", CLEF * 63 + "abc") == CLEF * 63 + "abc"  # 255 bytes
    for value in ("x" * 256, TOO_LONG, "é" * 128):
        with pytest.raises(InvalidValue, match="bytes of UTF-8; at most 255"):
            model.OrderLine("o1", value, 1)
    with pytest.raises(InvalidValue):
        model.require_text("ref", "\ud800")  # a lone surrogate has no UTF-8 form


@pytest.mark.parametrize(
    "value", ["", " ", "   ", "x\t", "\n", "x" * 256, "a\x00b", "\x7f", "\u3000", "\u00a0"]
)
def test_an_ascii_or_blank_identifier_the_rules_refuse_is_refused(value: str) -> None:
    # ASCII takes a shortcut past the general checks; it must refuse exactly what they do.
    with pytest.raises(InvalidValue):
        model.require_text("sku", value)


class _Text(str):
    pass


def test_a_str_subclass_is_judged_by_the_same_rules() -> None:
    assert model.require_text("sku", _Text("LAMP")) == "LAMP"
    with pytest.raises(InvalidValue):
        model.require_text("sku", _Text(" "))


def test_quantities_fit_a_postgresql_integer() -> None:
    assert model.OrderLine("o1", "LAMP", 2**31 - 1).qty == 2**31 - 1
    with pytest.raises(InvalidQuantity, match="at most 2147483647"):
        model.OrderLine("o1", "LAMP", 2**31)
    with pytest.raises(InvalidQuantity):
        model.Batch("b1", "LAMP", 2**40, None)
    product = model.Product("LAMP", [model.Batch("b1", "LAMP", 5, None)])
    product.change_batch_quantity("b1", 0)
    with pytest.raises(InvalidQuantity):
        product.change_batch_quantity("b1", 2**31)


def test_a_correlation_id_is_at_most_512_bytes() -> None:
    assert Envelope("m", correlation_id="c" * 512).correlation_id == "c" * 512
    with pytest.raises(InvalidValue, match="513 bytes"):
        Envelope("m", correlation_id="c" * 513)
    with pytest.raises(InvalidValue):
        Envelope("m", correlation_id=CLEF * 129)  # 129 characters, 516 bytes


def api(uow_factory: Callable[[], AbstractUnitOfWork] | None = None) -> TestClient:
    uow = FakeUnitOfWork()
    application = bootstrap(settings_from(), uow_factory=uow_factory or (lambda: uow))
    return TestClient(create_app(application), raise_server_exceptions=False)


def test_the_api_answers_identifiers_over_the_limit_with_400() -> None:
    client = api()
    made = client.post("/batches", json={"ref": "b1", "sku": TOO_LONG, "qty": 5})
    assert made.status_code == 400, made.text
    assert "bytes of UTF-8" in made.json()["detail"]
    asked = client.post("/allocate", json={"orderid": TOO_LONG, "sku": "LAMP", "qty": 1})
    assert asked.status_code == 400
    assert client.get(f"/allocations/{TOO_LONG}").status_code == 400


def test_the_api_answers_a_correlation_id_over_the_limit_with_400() -> None:
    client = api()
    assert client.post("/batches", json={"ref": "b1", "sku": "LAMP", "qty": 5}).status_code == 201
    response = client.post(
        "/allocate",
        json={"orderid": "o1", "sku": "LAMP", "qty": 1},
        headers={"x-correlation-id": "c" * 513},
    )
    assert response.status_code == 400, response.text
    assert "correlation id" in response.json()["detail"]


def failing(exc: Exception) -> Callable[[], AbstractUnitOfWork]:
    def factory() -> AbstractUnitOfWork:
        raise exc

    return factory


def test_an_exhausted_connection_pool_is_a_503_with_retry_after() -> None:
    client = api(failing(sa_exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached")))
    response = client.post("/batches", json={"ref": "b1", "sku": "LAMP", "qty": 5})
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"


def test_a_value_the_database_refuses_is_a_400_not_a_503() -> None:
    too_big = pg_errors.lookup("54000")("index row size 3080 exceeds btree maximum 2704")
    wrapped = sa_exc.DBAPIError.instance("INSERT ...", {}, too_big, psycopg2.Error)
    response = api(failing(wrapped)).post("/batches", json={"ref": "b1", "sku": "L", "qty": 5})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("SQLSTATE 54000")


def produce_args(topic: str, correlation_id: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(
        topic=topic, json=None, key=None, correlation_id=correlation_id, no_check=False
    )


@pytest.mark.parametrize(
    ("flags", "correlation_id", "error"),
    [
        # A record's check says which line failed and that nothing was sent.
        (["--orderid", "o1", "--sku", TOO_LONG, "--qty", "1"], None, ToolError),
        (["--orderid", "o1", "--sku", "LAMP", "--qty", str(2**31)], None, ToolError),
        (["--orderid", "o1", "--sku", "LAMP", "--qty", "1"], "c" * 513, InvalidValue),
    ],
)
def test_produce_refuses_a_value_over_a_limit_before_sending(
    flags: list[str], correlation_id: str | None, error: type[Exception]
) -> None:
    # No server is configured: the check must fail before anything is encoded or sent.
    settings = settings_from(
        schema_registry_url="http://127.0.0.1:9/none", kafka_bootstrap_servers="127.0.0.1:9"
    )
    with pytest.raises(error, match="at most"):
        console.produce(settings, produce_args(settings.topic_allocate, correlation_id), flags)


def test_the_limits_apply_to_every_command_checked_at_the_edge() -> None:
    from allocation.adapters.wire import check_command

    with pytest.raises(InvalidValue):
        check_command(commands.ChangeBatchQuantity(TOO_LONG, 1))
    with pytest.raises(InvalidQuantity):
        check_command(commands.ChangeBatchQuantity("b1", 2**31))
