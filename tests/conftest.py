"""Shared fixtures. Markers are strict: every test is unit, integration or e2e."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from allocation.adapters.database import make_engine, session_factory
from allocation.adapters.products import start_mappers
from allocation.adapters.security import kafka_client_security, registry_client_config
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.bootstrap import event_routes, upgrade_schema
from allocation.config import Settings, load_settings
from testkit.databases import throwaway_database
from tests.containers import docker_missing, running_servers, servers_mode
from tests.servers import server_missing


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


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, str]]:
    """Server addresses overriding the environment's: none for the native stack (the default);
    with TEST_SERVERS=containers, those of containers started from docker-compose.kafka.yml."""
    if servers_mode() == "native":
        yield {}
        return
    reason = docker_missing()
    if reason is not None:
        pytest.skip(reason)
    with running_servers() as addresses:
        yield addresses


@pytest.fixture(scope="session")
def settings(servers: dict[str, str]) -> Iterator[Settings]:
    """The environment's settings, pointed at a throwaway database of this test session.

    Tests then see no row of a running service, nor of an earlier run, and the
    relay's leader lock is theirs alone. The owner role (MIGRATION_DATABASE_URL)
    creates it; the service's role only gets what `allocation db upgrade` grants.
    """
    base = load_settings().model_copy(update={k.lower(): v for k, v in servers.items()})
    # Orders for an unknown sku wait 15 s instead of 15 min: long enough for a test's
    # batch to come after them, short enough that a test sees the expired ones rejected.
    base = base.model_copy(update={"unknown_sku_wait_s": 15.0, "waiting_sweep_interval_s": 1.0})
    try:
        with throwaway_database(base) as settings:
            yield settings
    except OperationalError as exc:
        url = make_url(base.migration_sqlalchemy_url).render_as_string()
        server_missing("PostgreSQL", url, exc)


@contextmanager
def fresh_database(settings: Settings) -> Iterator[Settings]:
    """Settings on a new, empty database beside the session's (no migration applied)."""
    with throwaway_database(settings) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """The service's role on the session's database, migrated by the owner role."""
    yield from migrated_engine(settings)


def migrated_engine(settings: Settings) -> Iterator[Engine]:
    """``engine``'s body, for a conftest that gives its tests a database of their own."""
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        server_missing("PostgreSQL", settings.database_url.rsplit("@", 1)[-1], exc)
    upgrade_schema(settings)
    start_mappers()
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def admin(settings: Settings) -> AdminClient:
    client = AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **kafka_client_security(settings)}
    )
    try:
        client.list_topics(timeout=10)
    except KafkaException as exc:
        server_missing("Kafka", settings.kafka_bootstrap_servers, exc)
    return client


@pytest.fixture(scope="session")
def registry(settings: Settings) -> SchemaRegistryClient:
    client = SchemaRegistryClient(registry_client_config(settings))
    try:
        client.get_subjects()
    except Exception as exc:
        server_missing("The schema registry", settings.schema_registry_url, exc)
    return client


@pytest.fixture
def sessions(engine: Engine) -> Callable[[], Session]:
    return session_factory(engine)


@pytest.fixture
def uow_factory(
    sessions: Callable[[], Session], settings: Settings
) -> Callable[[], SqlAlchemyUnitOfWork]:
    routes = event_routes(settings)
    return lambda: SqlAlchemyUnitOfWork(sessions, routes)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker, hand the chaos scenarios' rows to the controller."""
    from tests.chaos_table import RESULTS

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["chaos"] = [dataclasses.asdict(outcome) for outcome in RESULTS]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: the controller, as a worker ends
def pytest_testnodedown(node: Any, error: object) -> None:
    from tests.chaos_table import RESULTS, Outcome

    RESULTS.extend(Outcome(**row) for row in getattr(node, "workeroutput", {}).get("chaos", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The chaos table, when fault-injection scenarios ran (and its file under `make chaos`)."""
    from tests.chaos import SCALE
    from tests.chaos_table import RESULTS, render

    if not RESULTS:
        return
    table = render(RESULTS)
    terminalreporter.write_sep("=", f"chaos scenarios ({SCALE.orders} orders each, scale {SCALE})")
    terminalreporter.write_line(table)
    if os.environ.get("CHAOS_SIZE") == "full":
        out = Path(__file__).resolve().parents[1] / "bench" / "results" / "chaos.txt"
        out.write_text(table + "\n")
        terminalreporter.write_line(f"written: {out}")
