"""A consumer whose Kafka client breaks for good replaces it and carries on."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
from confluent_kafka import Consumer
from sqlalchemy import Engine

from allocation.adapters.security import kafka_client_security
from allocation.config import Settings
from testkit.processes import Service, service_env, wait_for_batches, wait_until_ready
from testkit.traffic import CommandSender, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku


def test_a_fenced_static_member_replaces_its_client(
    e2e_settings: Settings,
    engine: Engine,
    log_dir: Path,
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    # A group of its own, so that the intruder below disturbs no other test's consumer.
    s = e2e_settings.model_copy(update={"consumer_group": f"fenced-{uuid.uuid4().hex[:6]}"})
    instance = f"fenced-{uuid.uuid4().hex[:6]}"
    # Only the classic protocol fences a static member for good when another client takes
    # its identity (KIP-848 refuses the newcomer instead); the replacement path is the same.
    env = service_env(s, CONSUMER_INSTANCE_ID=instance, CONSUMER_GROUP_PROTOCOL="classic")
    consumer = Service(["consumer"], env, log_dir, "consumer").start()
    relay = Service(["relay"], env, log_dir, "relay").start()
    try:
        wait_until_ready(consumer)
        # Another client joins with the same static identity: librdkafka fences the
        # service's client with a fatal error, as after a broker failover.
        intruder = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap_servers,
                **kafka_client_security(s),
                "group.id": s.consumer_group,
                "group.instance.id": instance,
                "session.timeout.ms": 10_000,
                "partition.assignment.strategy": "cooperative-sticky",  # the service's
            }
        )
        intruder.subscribe([s.topic_allocate], on_assign=lambda *_: fenced.set())
        fenced = threading.Event()
        deadline = time.monotonic() + 30
        while not fenced.is_set():  # the intruder holds the identity: the service is fenced
            assert time.monotonic() < deadline, consumer.log()[-3000:]
            intruder.poll(0.2)
        intruder.close()

        sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
        sender.create_batch(s.topic_add_batch, ref, sku, 5)
        wait_for_batches(engine, [ref], timeout=90)
        sender.send(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 2}, sku)
        sender.flush()
        received = events.read_until(
            lambda got: any(r.value and r.value.get("orderid") == orderid for r in got), 90
        )
        assert [
            r.value["batchref"] for r in received if r.value and r.value.get("orderid") == orderid
        ] == [ref]
        assert consumer.running
        scraped = httpx.get(f"http://127.0.0.1:{consumer.metrics_port}/metrics", timeout=5).text
        replaced = 'allocation_kafka_clients_replaced_total{client="consumer",reason="fatal"}'
        assert f"{replaced} 1.0" in scraped.splitlines()
    finally:
        assert consumer.terminate() == 0
        relay.terminate()
