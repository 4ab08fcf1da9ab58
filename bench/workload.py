"""The load the figures put on the service: skus with stock to spare, encoded Allocates, and
producers that send them flat out or at a steady rate."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer
from sqlalchemy import insert

from allocation.adapters.security import kafka_client_security
from allocation.adapters.tables import batches, products
from allocation.bootstrap import avro_codec
from allocation.config import Settings
from bench.environment import BenchDatabase


def seed_skus(db: BenchDatabase, count: int, stock: int = 10_000_000) -> list[str]:
    """Skus with one warehouse batch each, stock to spare."""
    tag = uuid.uuid4().hex[:6]
    skus = [f"bench-{tag}-{n}" for n in range(count)]
    with db.engine.begin() as connection:
        connection.execute(insert(products), [{"sku": s, "version_number": 1} for s in skus])
        connection.execute(
            insert(batches),
            [{"reference": f"{s}-b", "sku": s, "purchased_quantity": stock} for s in skus],
        )
    return skus


def allocate_values(
    settings: Settings, skus: list[str], count: int
) -> list[tuple[str, str, bytes]]:
    """(orderid, sku, encoded Allocate) for ``count`` orders spread over the skus."""
    codec = avro_codec(settings)
    tag = uuid.uuid4().hex[:6]
    out = []
    for n in range(count):
        sku, orderid = skus[n % len(skus)], f"o-{tag}-{n}"
        record = {"orderid": orderid, "sku": sku, "qty": 1}
        out.append((orderid, sku, codec.encode(settings.topic_allocate, record)))
    return out


def fast_producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def produce_all(producer: Producer, topic: str, values: list[tuple[str, str, bytes]]) -> None:
    """Every order (``allocate_values``) as fast as the producer takes them, then waits for
    the broker's acknowledgements."""
    for _orderid, sku, value in values:
        produce(producer, topic, sku, value)
    producer.flush(120)


def produce(producer: Producer, topic: str, key: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value)
            return
        except BufferError:
            producer.poll(0.05)


def latency_producer(settings: Settings) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            **kafka_client_security(settings),
            "linger.ms": 0,
        }
    )


def paced(
    producer: Producer, settings: Settings, values: list[tuple[str, str, bytes]], rate: float
) -> dict[str, float]:
    """Produces ``values`` at ``rate`` a second (catching up when late, as an open load does);
    returns the monotonic time each order was sent."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for n, (orderid, sku, value) in enumerate(values):
        pause = started + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # sleep, not spin: the service shares these two cores
        sent[orderid] = time.monotonic()
        produce(producer, settings.topic_allocate, sku, value)
        producer.poll(0)
    producer.flush(30)
    return sent
