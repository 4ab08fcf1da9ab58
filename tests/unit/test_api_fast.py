"""The lean POST path answers exactly as FastAPI's: same requests, same status, body, headers.

Two apps, each over its own fake unit of work, get the same requests in the same
order: one with ``LeanPosts`` (the default), one without (``lean=False``). Whatever
the lean path answers itself, or hands on to FastAPI, must read the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.entrypoints.api import create_app
from tests.fakes import FakeUnitOfWork

JSON = {"content-type": "application/json"}
Headers = list[tuple[str, str | bytes]]


def app_client(*, lean: bool) -> TestClient:
    uow = FakeUnitOfWork()
    app = create_app(bootstrap(settings_from(), uow_factory=lambda: uow), lean=lean)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def both() -> Iterator[tuple[TestClient, TestClient]]:
    with app_client(lean=True) as lean, app_client(lean=False) as plain:
        yield lean, plain


def answers(client: TestClient, path: str, body: bytes, headers: Headers) -> tuple[Any, ...]:
    response = client.post(path, content=body, headers=headers)
    return response.status_code, response.content, sorted(response.headers.multi_items())


def differences(
    both: tuple[TestClient, TestClient], cases: list[tuple[str, bytes, Headers]]
) -> list[str]:
    lean, plain = both
    found = []
    for path, body, headers in cases:
        fast, slow = answers(lean, path, body, headers), answers(plain, path, body, headers)
        if fast != slow:
            found.append(f"{path} {body[:80]!r} {headers}:\n  lean  {fast}\n  plain {slow}")
    return found


def batch(**fields: object) -> bytes:
    return json.dumps({"ref": "b-1", "sku": "LAMP", "qty": 100} | fields).encode()


def line(**fields: object) -> bytes:
    return json.dumps({"orderid": "o-1", "sku": "LAMP", "qty": 1} | fields).encode()


KEY = [("content-type", "application/json"), ("idempotency-key", "k-1")]
JSON_TYPE = [("content-type", "application/json")]
# In order: the first ones create the batches the later allocations need.
BODIES: list[tuple[str, bytes]] = [
    ("/batches", batch()),
    ("/batches", batch()),  # the reference again: 409
    ("/batches", batch(ref="b-2", eta="2030-01-02")),
    ("/batches", batch(ref="b-3", eta=None, sku="ランプ")),
    ("/batches", b'{"ref": "b-4", "sku": "LAMP", "qty": 5, "ref": "b-5"}'),
    *[
        ("/batches", batch(ref=f"b-eta-{i}", eta=eta))
        for i, eta in enumerate(
            [
                *["2030-02-30", "2030-W01-1", "20300102", "2030-01-02T00:00:00", "2030-1-02"],
                *["0001-01-01", "9999-12-31", "0000-01-01", " 2030-01-02", "2030-01-02Z"],
                *["\uff12\uff10\uff13\uff10-01-02", 1_700_000_000, 0, True, [], {}, ""],
            ]
        )
    ],
    ("/batches", batch(ref="b-x", extra=1)),
    ("/batches", b'{"ref": "b-y", "qty": 1}'),
    ("/allocate", line()),
    ("/allocate", line(orderid="o-2", sku="ランプ")),
    ("/allocate", line(orderid="o-3", qty=2**31 - 1)),  # out of stock: 409
    ("/allocate", line(sku="NOSUCH")),  # the domain's 400
    *[
        ("/allocate", line(qty=qty))
        for qty in [0, -1, 2**31, 10**40, 1.0, 1.5, "1", True, False, None, [1], {"n": 1}]
    ],
    ("/allocate", b'{"orderid": "o-4", "sku": "LAMP", "qty": 1e3}'),
    ("/allocate", b'{"orderid": "o-4", "sku": "LAMP", "qty": NaN}'),
    ("/allocate", b'{"orderid": "o-4", "sku": "LAMP", "qty": 1' + b"0" * 5000 + b"}"),
    ("/allocate", b'{"orderid": "o-4", "sku": "LAMP", "qty": 1, "qty": "1"}'),
    ("/allocate", b'{"orderid": "o-4", "sku": "LAMP", "qty": "1", "qty": 1}'),
    *[
        ("/allocate", line(orderid=orderid))
        for orderid in [
            *["", " ", "\t", "\u3000", "\u200b", "\x1c", "a\x00b", "\ud800", "o\u0085"],
            *["🛋️", "é" * 127 + "a", "é" * 128, "a" * 255, "a" * 256, " o-5 ", 5, None, ["o"]],
        ]
    ],
    ("/allocate", line(extra=None)),
    ("/allocate", b'{"orderid": "o-6", "sku": "LAMP"}'),
    ("/allocate", b"{not json"),
    ("/allocate", b""),
    ("/allocate", b"{"),
    ("/allocate", b'{"orderid": "o-7", "sku": "LAMP", "qty": 1} trailing'),
    ("/allocate", b"\xef\xbb\xbf" + line(orderid="o-bom")),
    ("/allocate", line(orderid="o-utf16").decode().encode("utf-16")),
    ("/allocate", b'{"orderid": "\xff", "sku": "LAMP", "qty": 1}'),
    ("/allocate", b'[{"orderid": "o-8", "sku": "LAMP", "qty": 1}]'),
    ("/allocate", b'"o-8"'),
    ("/allocate", b"1"),
    ("/allocate", b"null"),
]
HEADERS: list[Headers] = [
    [],
    [("content-type", "text/plain")],
    [("content-type", "application/json; charset=utf-8")],
    [("content-type", "APPLICATION/JSON")],
    [("content-type", "application/vnd.api+json")],
    [("content-type", "application/jsonx")],
    [("content-type", "application/json garbage")],
    [("content-type", "text/plain"), ("content-type", "application/json")],
    [("content-type", "application/json"), ("content-type", "text/plain")],
    KEY,
    [*JSON_TYPE, ("idempotency-key", "")],
    [*JSON_TYPE, ("idempotency-key", "a b")],
    [*JSON_TYPE, ("idempotency-key", "k" * 255)],
    [*JSON_TYPE, ("idempotency-key", "k" * 256)],
    [*JSON_TYPE, ("idempotency-key", "k\tk")],
    [("content-type", "application/json"), ("idempotency-key", "k-2"), ("idempotency-key", "")],
    [*JSON_TYPE, ("x-correlation-id", "corr-1"), ("traceparent", "not a traceparent")],
]


def test_the_lean_path_answers_every_request_as_fastapi_does(
    both: tuple[TestClient, TestClient],
) -> None:
    cases = [(path, body, [*headers]) for headers in HEADERS for path, body in BODIES]
    cases.append(("/allocate", line(orderid="o-9"), [("idempotency-key", "é".encode())]))
    cases.append(("/allocate", line(orderid="o-9"), KEY))  # k-1 reused for another path: 422
    assert differences(both, cases) == []


def created_batches() -> float:
    labels = {"method": "POST", "route": "/batches", "status": "201"}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


def test_the_lean_path_answers_a_valid_post_without_fastapis_route_and_counts_it() -> None:
    before = created_batches()
    with app_client(lean=True) as client:
        api: Any = client.app
        api.router.routes = [
            r for r in api.routes if not isinstance(r, APIRoute) or "POST" not in r.methods
        ]
        created = client.post("/batches", content=batch(), headers=JSON)
        invalid = client.post("/batches", content=batch(qty=0), headers=JSON)
    assert (created.status_code, created.json()) == (201, {"ref": "b-1"})
    assert created_batches() == before + 1  # labelled by the route's template, as FastAPI does
    assert invalid.status_code in (404, 405)  # handed on to a router without the route


FIELDS = ["ref", "orderid", "sku", "qty", "eta", "extra"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5) | st.integers(),
    st.floats(),
    st.sampled_from(["LAMP", "2030-01-02", "", " ", "2030-13-01"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def test_the_lean_path_answers_generated_requests_as_fastapi_does(
    both: tuple[TestClient, TestClient],
) -> None:
    @given(
        path=st.sampled_from(["/allocate", "/batches"]),
        body=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=5),
        key=st.none() | st.sampled_from(["k-a", "k-b"]) | st.text(max_size=3),
    )
    @hypothesis_settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    def alike(path: str, body: dict[str, object], key: str | None) -> None:
        headers = [*JSON_TYPE]
        if key is not None and key.isascii() and key.isprintable():
            headers.append(("idempotency-key", key))
        raw = json.dumps(body).encode()
        assert differences(both, [(path, raw, headers)]) == []

    alike()
