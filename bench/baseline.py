"""The naive pipeline the service is measured against: the book's chapter-11 shape.

One transaction per message, then the events published straight to Kafka after
the commit (the dual write the outbox exists to remove), offsets auto-committed.
Run as ``python -m bench.baseline`` with the same environment as the service.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from confluent_kafka import Consumer, Producer

from allocation.adapters.contract import topic_records
from allocation.adapters.database import make_engine, session_factory
from allocation.adapters.products import start_mappers
from allocation.adapters.security import kafka_client_security
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.adapters.wire import COMMAND_DECODERS, event_to_record
from allocation.bootstrap import avro_codec, event_routes
from allocation.config import load_settings
from allocation.domain import events
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


def main() -> int:
    settings = load_settings()
    start_mappers()
    engine = make_engine(settings.sqlalchemy_url)
    sessions = session_factory(engine)
    raised: list[events.Event] = []

    def remember(event: Any, _uow: AbstractUnitOfWork) -> None:
        raised.append(event)

    handlers = {kind: [*found, remember] for kind, found in EVENT_HANDLERS.items()}
    bus = MessageBus(lambda: SqlAlchemyUnitOfWork(sessions, {}), COMMAND_HANDLERS, handlers)
    codec = avro_codec(settings)
    routes = event_routes(settings)
    records = topic_records(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "group.id": settings.consumer_group,
            "client.id": f"bench-baseline-{os.getpid()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, **kafka_client_security(settings)}
    )
    consumer.subscribe(list(settings.command_topics))
    print("baseline consuming", flush=True)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    while not stopping:
        message = consumer.poll(0.2)
        if message is None or message.error() is not None:
            continue
        topic = str(message.topic())
        command = COMMAND_DECODERS[records[topic]](codec.decode(topic, message.value()))
        raised.clear()
        try:
            bus.handle(command)
        except Exception as exc:  # the naive shape logs and moves on
            print(f"failed: {exc}", file=sys.stderr)
            continue
        for event in raised:  # publish after the commit, one at a time
            destination = routes[type(event)]
            value = codec.encode(destination, event_to_record(event))
            producer.produce(destination, key=getattr(event, "sku", "").encode(), value=value)
            producer.flush()
    consumer.close()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
