"""The composition root: the only place that builds engines and wires dependencies.

Nothing in the package connects to anything at import time; an entrypoint calls
``bootstrap(settings)`` and closes what it gets back when it stops.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from confluent_kafka import Consumer, Producer
from sqlalchemy import Engine

from allocation.adapters import orm
from allocation.adapters.avro import AvroCodec, registry_client
from allocation.adapters.database import SqlAlchemyUnitOfWork, make_engine, session_factory
from allocation.adapters.kafka import DLQ_MAX_BYTES, command_consumer_config, producer_config
from allocation.adapters.wire import load_schema, topic_records
from allocation.config import Settings
from allocation.domain import events
from allocation.entrypoints.consumer import CommandConsumer
from allocation.entrypoints.relay import OutboxRelay
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, EventRoutes


def avro_codec(settings: Settings) -> AvroCodec:
    """The Avro codec of every contract topic, backed by the schema registry."""
    schemas = {topic: load_schema(name) for topic, name in topic_records(settings).items()}
    return AvroCodec(registry_client(settings), schemas)


def event_routes(settings: Settings) -> EventRoutes:
    """The topic each integration event is published to."""
    return {
        events.Allocated: settings.topic_line_allocated,
        events.Deallocated: settings.topic_line_deallocated,
        events.OutOfStock: settings.topic_out_of_stock,
    }


@dataclass
class Application:
    """What an entrypoint needs: the bus, fresh units of work for reads, and a way to close."""

    settings: Settings
    bus: MessageBus
    uow_factory: Callable[[], AbstractUnitOfWork]
    engine: Engine | None = field(default=None)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def bootstrap(
    settings: Settings,
    uow_factory: Callable[[], AbstractUnitOfWork] | None = None,
) -> Application:
    """Wire the service; with no ``uow_factory``, units of work run on PostgreSQL."""
    engine = None
    if uow_factory is None:
        orm.start_mappers()
        engine = make_engine(settings.sqlalchemy_url)
        sessions = session_factory(engine)
        routes = event_routes(settings)

        def sql_uow() -> AbstractUnitOfWork:
            return SqlAlchemyUnitOfWork(sessions, routes)

        uow_factory = sql_uow

    bus = MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS, settings.max_attempts)
    return Application(settings=settings, bus=bus, uow_factory=uow_factory, engine=engine)


def command_consumer(
    settings: Settings, application: Application, stop: threading.Event
) -> CommandConsumer:
    """The consumer of the command topics, applying through ``application``'s bus."""
    client_id = f"allocation-consumer-{os.getpid()}"
    records = topic_records(settings)
    return CommandConsumer(
        consumer_factory=lambda: Consumer(command_consumer_config(settings, client_id)),
        dlq=Producer(producer_config(settings, client_id, **{"message.max.bytes": DLQ_MAX_BYTES})),
        dlq_topic=settings.topic_dlq,
        codec=avro_codec(settings),
        bus=application.bus,
        records={topic: records[topic] for topic in settings.command_topics},
        stop=stop,
        batch_size=settings.consumer_batch_size,
    )


def outbox_relay(settings: Settings, engine: Engine, stop: threading.Event) -> OutboxRelay:
    """The relay publishing the outbox; ``engine`` is the pool it reads and marks rows with."""
    client_id = f"allocation-relay-{os.getpid()}"
    # A broker outage shorter than this is waited out inside one delivery; past it
    # the rows go back to pending and the relay retries after a pause.
    # The relay hands over whole batches and then flushes, so lingering only adds latency.
    producer = Producer(
        producer_config(settings, client_id, **{"message.timeout.ms": 120_000, "linger.ms": 1})
    )
    return OutboxRelay(
        dsn=settings.database_url,
        engine=engine,
        producer=producer,
        codec=avro_codec(settings),
        stop=stop,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
        max_attempts=settings.relay_max_attempts,
        hold_back_base_s=settings.relay_retry_base_s,
        retention=timedelta(hours=settings.outbox_retention_hours),
        inbox_retention=timedelta(hours=settings.inbox_retention_hours),
        prune_every_s=settings.relay_prune_interval_s,
    )
