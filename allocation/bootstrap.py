"""The composition root: builds the engine, the message bus, the codec and the Kafka clients.

Nothing in the package connects to anything at import time; an entrypoint calls
``bootstrap(settings)``, builds its process from what it gets back, and closes it
when it stops. Nothing under ``allocation/`` but the entrypoints imports this module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from confluent_kafka import Consumer, Producer
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from allocation.adapters import contract, metrics
from allocation.adapters.avro import AvroCodec, registry_client
from allocation.adapters.database import end_stalled_transactions, make_engine, session_factory
from allocation.adapters.kafka import DLQ_MAX_BYTES, command_consumer_config, producer_config
from allocation.adapters.products import start_mappers
from allocation.adapters.schema_migrations import migrate
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.config import Settings
from allocation.domain import commands, events
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS, allocate
from allocation.service_layer.messagebus import CommandHandler, MessageBus
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, EventRoutes
from allocation.service_layer.waiting import WaitingPolicy


def avro_codec(settings: Settings) -> AvroCodec:
    """The Avro codec of every contract topic, backed by the schema registry."""
    return AvroCodec(registry_client(settings), contract.topic_schemas(settings))


def event_routes(settings: Settings) -> EventRoutes:
    """The topic each integration event is published to."""
    return {
        events.Allocated: settings.topic_line_allocated,
        events.Deallocated: settings.topic_line_deallocated,
        events.OutOfStock: settings.topic_out_of_stock,
        events.CommandRejected: settings.topic_command_rejected,
    }


def database(settings: Settings, pool_size: int = 5, pre_ping: bool = True) -> Engine:
    """An engine on the service's database; the caller disposes of it.

    A transaction of its left silent for ``STALLED_TRANSACTION_S`` is ended by the server.
    """
    engine = make_engine(settings.sqlalchemy_url, pool_size=pool_size, pre_ping=pre_ping)
    end_stalled_transactions(engine)
    return engine


def upgrade_schema(settings: Settings, revision: str = "head") -> None:
    """Migrate as the database's owner (MIGRATION_DATABASE_URL, else DATABASE_URL), then
    grant the service's role (DATABASE_URL's user) what it needs, in one transaction."""
    owner = make_engine(settings.migration_sqlalchemy_url, pool_size=1)
    try:
        migrate(owner, revision, grant_to=make_url(settings.sqlalchemy_url).username)
    finally:
        owner.dispose()


@dataclass
class Application:
    """What an entrypoint needs: the bus, fresh units of work for reads, and a way to close."""

    settings: Settings
    bus: MessageBus
    uow_factory: Callable[[], AbstractUnitOfWork]
    engine: Engine | None = field(default=None)

    def close(self) -> None:
        """Release the database connections."""
        if self.engine is not None:
            self.engine.dispose()


def bootstrap(
    settings: Settings,
    uow_factory: Callable[[], AbstractUnitOfWork] | None = None,
    *,
    pre_ping: bool = True,
) -> Application:
    """Wire the service; with no ``uow_factory``, units of work run on PostgreSQL.

    ``pre_ping=False`` is for processes that retry transient faults themselves (``make_engine``).
    """
    engine = None
    if uow_factory is None:
        start_mappers()
        engine = database(settings, pre_ping=pre_ping)
        sessions = session_factory(engine)
        routes = event_routes(settings)
        # Only looks its schemas up (registering is the deploy step), once per topic.
        versions = avro_codec(settings).version_of

        def sql_uow() -> AbstractUnitOfWork:
            return SqlAlchemyUnitOfWork(sessions, routes, versions)

        uow_factory = sql_uow

    bus = MessageBus(uow_factory, command_handlers(settings), EVENT_HANDLERS, settings.max_attempts)
    return Application(settings=settings, bus=bus, uow_factory=uow_factory, engine=engine)


def command_handlers(settings: Settings) -> dict[type[commands.Command], CommandHandler]:
    """The handlers, with the dependencies the settings decide injected."""
    waiting = WaitingPolicy(timedelta(seconds=settings.unknown_sku_wait_s))
    return {**COMMAND_HANDLERS, commands.Allocate: functools.partial(allocate, waiting=waiting)}


def client_id(role: str) -> str:
    """A Kafka client id naming the process: ``allocation-<role>-<pid>``."""
    return f"allocation-{role}-{os.getpid()}"


def command_consumer_factory(settings: Settings) -> Callable[[], Consumer]:
    """Makes the command topics' Kafka consumer (again, when a broken one is replaced)."""
    config = command_consumer_config(settings, client_id("consumer"))
    # The lag gauge comes from librdkafka's own statistics: no admin requests.
    config.update({"statistics.interval.ms": 5000, "stats_cb": metrics.record_lag})
    return lambda: Consumer(config)


def dead_letter_producer(settings: Settings) -> Producer:
    """The producer of dead letters; it takes records as large as the DLQ topic does."""
    config = producer_config(
        settings, client_id("consumer"), **{"message.max.bytes": DLQ_MAX_BYTES}
    )
    return Producer(config)


def relay_producer(settings: Settings) -> Producer:
    """The relay's producer of events."""
    # A broker outage shorter than the message timeout is waited out inside one
    # delivery; past it the rows go back to pending and the relay retries after a
    # pause. The relay hands over a whole chunk and then flushes, and a flush sends
    # at once whatever lingers: lingering costs no latency, and 20 ms (not 1) fills
    # fewer, larger produce requests while a chunk is handed over: from a full outbox
    # the broker's CPU per event went from 7-11 us to 2.4-5.2, the relay's own
    # librdkafka threads' from 2.4-3.6 to 0.8-1.0.
    overrides = {"message.timeout.ms": 120_000, "linger.ms": 20}
    return Producer(producer_config(settings, client_id("relay"), **overrides))
