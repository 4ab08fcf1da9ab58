"""The HTTP API: a thin FastAPI layer over the same message bus the consumer uses.

Requests are validated at the edge, with the README's limits; bad input is a 4xx
with a reason, the domain's rejections are 400 (409 for a duplicate batch), and
a failure ``faults.classify`` calls transient (a database down, no connection
free in the pool, a conflict that kept recurring) is a 503 the client may retry.
A POST with an ``Idempotency-Key`` header is applied once, and its retries get
the stored answer (``idempotency.py``). A valid POST is answered by ``api_fast.LeanPosts``
before FastAPI's routing; the routes below still describe it, and judge any other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import text

from allocation.adapters.faults import Kind, RegistryUnavailable, classify
from allocation.bootstrap import Application
from allocation.domain import model
from allocation.domain.errors import DomainError
from allocation.entrypoints import api_operations
from allocation.entrypoints.api_auth import BearerToken
from allocation.entrypoints.api_fast import LeanPosts, Posts, allocation, new_batch
from allocation.entrypoints.group_commit import Stopping
from allocation.entrypoints.idempotency import rejection_answer
from allocation.service_layer.unit_of_work import ConcurrencyConflict

logger = logging.getLogger(__name__)


def _within_bytes(value: str) -> str:
    """The identifier limit is in bytes of UTF-8; ``max_length`` alone counts characters."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > model.MAX_IDENTIFIER_BYTES:
        raise ValueError(f"is {size} bytes of UTF-8; at most {model.MAX_IDENTIFIER_BYTES}")
    return value


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=model.MAX_IDENTIFIER_BYTES, pattern=r"\S"),
    AfterValidator(_within_bytes),
]
Quantity = Annotated[StrictInt, Field(gt=0, le=model.MAX_QUANTITY)]
# Printable ASCII without spaces, as the IETF draft's examples (UUIDs and the like).
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[!-~]+$"),
]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: Identifier
    sku: Identifier
    qty: Quantity
    eta: date | None = None


class AllocateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orderid: Identifier
    sku: Identifier
    qty: Quantity


class AllocationOut(BaseModel):
    batchref: str | None
    detail: str | None = None


class BatchOut(BaseModel):
    ref: str
    sku: str
    qty: int
    eta: date | None
    version: int
    allocated: int


class OrderLineAllocation(BaseModel):
    sku: str
    batchref: str


class Problem(BaseModel):
    detail: str


def create_app(application: Application, *, lean: bool = True) -> FastAPI:
    """The API; ``lean=False`` leaves both POSTs to FastAPI alone (``api_fast.py``)."""
    posts = Posts(application)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            posts.shared.stop()

    api = FastAPI(
        title="allocation",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own spans and metrics, made whenever a provider is installed, follow
        # conventions of its choosing; this project's tracing is pinned to one version, and
        # its HTTP metrics are its own (api_operations.py). Off, FastAPI also stops looking
        # for a provider on every request, which cost about 5% of the HTTP thread's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    @api.post(
        "/batches",
        status_code=201,
        responses={400: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
    )
    async def add_batch(
        batch: BatchIn, request: Request, idempotency_key: IdempotencyKey = None
    ) -> Response:
        parsed = new_batch(batch.ref, batch.sku, batch.qty, batch.eta)
        return await posts.apply(parsed, request.headers, idempotency_key, lambda: request.url.path)

    @api.post(
        "/allocate",
        status_code=201,
        response_model=AllocationOut,
        responses={
            400: {"model": Problem},
            409: {"model": AllocationOut},
            422: {"model": Problem},
        },
    )
    async def allocate(
        line: AllocateIn, request: Request, idempotency_key: IdempotencyKey = None
    ) -> Response:
        parsed = allocation(line.orderid, line.sku, line.qty)
        return await posts.apply(parsed, request.headers, idempotency_key, lambda: request.url.path)

    @api.get(
        "/batches/{ref}",
        response_model=BatchOut,
        responses={400: {"model": Problem}, 404: {"model": Problem}},
    )
    def batch(ref: str) -> Any:
        """A batch as it stands; ``version`` is what a ChangeBatchQuantity may expect."""
        model.require_text("ref", ref)
        with application.uow_factory() as uow:
            product = uow.products.get_by_batchref(ref)
            if product is None:
                return JSONResponse(status_code=404, content={"detail": f"no batch {ref}"})
            found = product.batch(ref)
            return BatchOut(
                ref=found.reference,
                sku=found.sku,
                qty=found.purchased_quantity,
                eta=found.eta,
                version=found.version,
                allocated=found.allocated_quantity,
            )

    @api.get(
        "/allocations/{orderid}",
        response_model=list[OrderLineAllocation],
        responses={400: {"model": Problem}, 404: {"model": Problem}},
    )
    def allocations(orderid: str) -> Any:
        model.require_text("orderid", orderid)
        with application.uow_factory() as uow:
            rows = uow.views.for_order(orderid)
        if not rows:
            return JSONResponse(
                status_code=404, content={"detail": f"no allocations for {orderid}"}
            )
        return [OrderLineAllocation(sku=row.sku, batchref=row.batchref) for row in rows]

    @api.get("/healthz", responses={503: {"model": Problem}})
    def healthz() -> Any:
        if application.engine is not None:
            with application.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        return {"status": "ok"}

    _install_error_handlers(api)
    if lean:  # added first: the innermost middleware, inside the token and the metrics
        posts_routes = {
            route.path: route
            for route in api.routes
            if isinstance(route, APIRoute) and route.methods == {"POST"}
        }
        api.add_middleware(
            LeanPosts, posts=posts, routes=posts_routes, handlers=api.exception_handlers
        )
    token = application.settings.api_token
    if token is not None:  # added first: the request metrics count its 401s too
        api.add_middleware(BearerToken, token=token.get_secret_value())
    api_operations.install(api, application.engine)
    return api


def _install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'][1:]) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return JSONResponse(status_code=400, content={"detail": reasons})

    @api.exception_handler(DomainError)
    async def rejected(_: Request, exc: DomainError) -> JSONResponse:
        code, content = rejection_answer(exc)
        return JSONResponse(status_code=code, content=content)

    @api.exception_handler(ConcurrencyConflict)
    async def conflicted(_: Request, exc: ConcurrencyConflict) -> JSONResponse:
        return _unavailable("too many concurrent changes to this product; retry")

    @api.exception_handler(Stopping)
    async def stopping(_: Request, exc: Stopping) -> JSONResponse:
        return _unavailable("the service is stopping; retry")

    @api.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, RegistryUnavailable):  # asked once per topic, for the outbox rows
            logger.warning("schema registry unavailable: %s", exc)
            return _unavailable("schema registry unavailable; retry")
        fault = classify(exc)
        if fault.kind is Kind.TRANSIENT:
            logger.warning("database unavailable: %s", fault.reason)
            return _unavailable("database unavailable; retry")
        if fault.kind is Kind.POISON:  # a value the database refused (SQLSTATE 22, 54)
            return JSONResponse(status_code=400, content={"detail": fault.reason})
        if fault.kind is Kind.SYSTEMIC:
            logger.error("service not usable: %s", fault.reason)
            return _unavailable("service unavailable; retry")
        logger.exception("unhandled error")
        return JSONResponse(status_code=500, content={"detail": "internal error"})


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": "1"})
