"""The consumer's and the relay's counters agree with what the database holds."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from allocation.adapters.tables import allocations, outbox
from allocation.bootstrap import avro_codec
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import Service, service_env, wait_for_batches, wait_until
from testkit.topics import drop_topics
from testkit.traffic import CommandSender
from tests.conftest import random_batchref, random_orderid, random_sku

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(service: Service) -> Samples:
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_counters_agree_with_the_rows(
    e2e_settings: Settings,
    engine: Engine,
    log_dir: Path,
) -> None:
    s = e2e_settings.with_prefix(f"metrics-{random_sku()}", topic_partitions=2)
    create_contract_topics(s)
    register_contract_schemas(s)
    env = service_env(s)
    ours = CommandSender(s, avro_codec(s))
    consumer = Service(["consumer"], env, log_dir, "consumer").start()
    relay = Service(["relay"], env, log_dir, "relay").start()
    try:
        sku, ref = random_sku(), random_batchref()
        ours.create_batch(s.topic_add_batch, ref, sku, 1000)
        wait_for_batches(engine, [ref])
        orders = [random_orderid(n) for n in range(25)]
        for orderid in orders:
            ours.send(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 1}, sku)
        ours.send(s.topic_allocate, {"orderid": "o", "sku": random_sku("none"), "qty": 1}, "x")
        ours.send_raw(s.topic_allocate, b"not avro", "poison")
        ours.flush()

        published = (
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.key == sku, outbox.c.published_at.is_not(None))
        )

        def all_published() -> bool:
            with engine.connect() as connection:
                return connection.execute(published).scalar_one() == len(orders)

        wait_until(all_published, 60, "every Allocated to be published")

        def counted() -> bool:
            c = scrape(consumer)
            return (
                value(
                    c,
                    "allocation_commands_total",
                    topic=s.topic_allocate,
                    outcome="dead_lettered",
                    reason="UndecodableMessage",
                )
                == 1
                # The unknown sku's order waits for a batch (15 s in tests), then is rejected.
                and value(
                    c,
                    "allocation_commands_total",
                    topic=s.topic_allocate,
                    outcome="rejected",
                    reason="InvalidSku",
                )
                == 1
                and value(c, "allocation_waiting_orders") == 0
            )

        wait_until(counted, 60, "the poison and the expired order to be counted")
        c, r = scrape(consumer), scrape(relay)
        with engine.connect() as connection:
            stored = connection.execute(
                select(func.count()).select_from(allocations).where(allocations.c.sku == sku)
            ).scalar_one()
        assert (
            value(
                c, "allocation_commands_total", topic=s.topic_allocate, outcome="applied", reason=""
            )
            == stored
            == len(orders)
        )
        assert (
            value(
                c,
                "allocation_commands_total",
                topic=s.topic_add_batch,
                outcome="applied",
                reason="",
            )
            == 1
        )
        assert (
            value(
                c,
                "allocation_commands_total",
                topic=s.topic_allocate,
                outcome="rejected",
                reason="InvalidSku",
            )
            == 1
        )
        assert (
            value(
                c, "allocation_commands_total", topic=s.topic_allocate, outcome="waiting", reason=""
            )
            == 1
        )
        assert value(c, "allocation_consumer_batch_seconds_count") >= 1
        assert value(c, "allocation_consumer_paused") == 0
        assert value(r, "allocation_events_published_total", topic=s.topic_line_allocated) == len(
            orders
        )
        assert value(r, "allocation_relay_leader") == 1
        assert value(r, "allocation_event_publish_delay_seconds_count") >= len(orders)
    finally:
        codes = consumer.terminate(), relay.terminate()
        drop_topics(s)
    assert codes == (0, 0)
