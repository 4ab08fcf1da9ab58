"""A consumer whose client fetches nothing while commands wait is replaced and carries on.

librdkafka #5430 leaves a partition without a leader in the client's view: no fetch, no
error, the group membership intact. The same symptom is made here by pausing the service's
client on its partitions from outside its loop (fault injection: the service itself never
pauses them), on topics and a group of the test's own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, delete

from allocation.adapters.tables import outbox
from allocation.bootstrap import Application, avro_codec, bootstrap
from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints import consumer as command_consumer
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import all_allocated, wait_until
from testkit.topics import drop_topics
from testkit.traffic import CommandSender
from tests.conftest import random_batchref, random_orderid, random_sku
from tests.observability import clients_replaced

STARVED_AFTER_S = 1.0


@pytest.fixture
def own(settings: Settings, admin: AdminClient, engine: Engine) -> Iterator[Settings]:
    ours = settings.with_prefix(
        f"starved-{uuid.uuid4().hex[:6]}",
        topic_partitions=2,
        consumer_starved_after_s=STARVED_AFTER_S,
    )
    create_contract_topics(ours)
    register_contract_schemas(ours)
    yield ours
    # No relay runs here: the events go with their topics, or a later test's relay would
    # find rows for topics that are gone.
    with engine.begin() as connection:
        connection.execute(delete(outbox).where(outbox.c.topic.in_(ours.event_topics)))
    drop_topics(admin, ours.all_topics)


@pytest.fixture
def application(own: Settings) -> Iterator[Application]:
    app = bootstrap(own)
    yield app
    app.close()


@pytest.mark.timeout(120)
def test_a_consumer_fetching_nothing_while_commands_wait_is_replaced(
    own: Settings, application: Application, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    sku, ref = random_sku("starved"), random_batchref()
    application.bus.handle_many([(commands.CreateBatch(ref, sku, 100, None), None)])
    before = clients_replaced("consumer", "starved")
    stop = threading.Event()
    service = command_consumer.build(own, application, stop)
    running = threading.Thread(target=service.run, name="consumer", daemon=True)
    running.start()
    try:
        wait_until(lambda: service.health.readiness()[0], 60, "partitions to be assigned")
        client = service._consumer  # the fault is injected into the client in use
        client.pause([TopicPartition(own.topic_allocate, p) for p in range(2)])
        orderids = [random_orderid(n) for n in range(4)]
        sender = CommandSender(own, avro_codec(own))
        for orderid in orderids:
            sender.send(own.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 1}, sku)
        sender.flush()
        wait_until(lambda: all_allocated(engine, orderids), 60, "the waiting orders")
        assert service.clients_replaced == 1
        assert clients_replaced("consumer", "starved") == before + 1
        assert service._consumer is not client
        assert "nothing fetched for" in caplog.text  # the reason, in the replacement's line
    finally:
        stop.set()
        running.join(30)
    assert all_allocated(engine, orderids)
