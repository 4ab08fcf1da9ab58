from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from allocation.adapters import orm
from allocation.adapters.database import (
    SqlAlchemyUnitOfWork,
    make_engine,
    migrate,
    session_factory,
)
from allocation.bootstrap import event_routes
from allocation.config import Settings, load_settings
from tests.servers import server_missing


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        server_missing("PostgreSQL", settings.database_url.rsplit("@", 1)[-1], exc)
    migrate(engine)
    orm.start_mappers()
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def admin(settings: Settings) -> AdminClient:
    client = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    try:
        client.list_topics(timeout=10)
    except KafkaException as exc:
        server_missing("Kafka", settings.kafka_bootstrap_servers, exc)
    return client


@pytest.fixture(scope="session")
def registry(settings: Settings) -> SchemaRegistryClient:
    client = SchemaRegistryClient({"url": settings.schema_registry_url, "timeout": 10})
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
