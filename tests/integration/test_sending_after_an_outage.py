"""Producers across a broker out of reach: nothing written twice once it is back.

The consumer's dead letters and the CLI's commands go out through ``produce_and_wait``.
When the broker is out of reach past its wait, the caller reports the failure and tries
again later; a message left in the producer's queue would then be written as well once
the broker is back, a second copy beside the retry's.

The chaos suite's load moves what a stuck producer holds unsent to a new producer
(``CommandSender.resend_on_a_new_producer``); its verdicts count on that move writing
each order once, in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from allocation.adapters.kafka import Outgoing, produce_and_wait, producer_config
from allocation.config import Settings
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, Recorder
from tests.proxy import CuttableProxy, proxied_listener


@pytest.fixture
def topic(admin: AdminClient) -> Iterator[str]:
    name = f"test-produce-and-wait-{uuid.uuid4().hex[:8]}"
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(30)
    yield name
    drop_topics(admin, [name])


@pytest.fixture
def proxy(settings: Settings) -> Iterator[CuttableProxy]:
    advertised, bound = proxied_listener(settings)
    proxy = CuttableProxy(advertised, bound)
    yield proxy
    proxy.close()


def through(proxy: CuttableProxy, settings: Settings) -> Settings:
    return settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{proxy.port}"})


def one(topic: str, value: bytes) -> list[Outgoing]:
    return [Outgoing(topic, b"key", value, [])]


def read_until(settings: Settings, topic: str, last: bytes) -> list[bytes | None]:
    """The topic's values, read from its start until ``last`` is among them."""
    recorder = Recorder(settings, [topic])
    recorder.start()
    try:
        recorder.wait_for(lambda seen: any(r.value == last for r in seen), 30, repr(last))
        return [r.value for r in recorder.on(topic)]
    finally:
        recorder.stop()


def test_a_message_whose_wait_gave_up_is_not_written_once_the_broker_is_back(
    settings: Settings, topic: str, proxy: CuttableProxy
) -> None:
    producer = Producer(producer_config(through(proxy, settings), "test-produce-and-wait"))
    produce_and_wait(producer, one(topic, b"before"), timeout=30)

    proxy.cut()
    with pytest.raises(KafkaException, match="no acknowledgement within"):
        produce_and_wait(producer, one(topic, b"given up"), timeout=2)
    proxy.restore()

    # One partition, one producer: had "given up" still been queued, it would go out
    # before "after" (the idempotent producer keeps a partition's order).
    produce_and_wait(producer, one(topic, b"after"), timeout=60)
    assert read_until(settings, topic, b"after") == [b"before", b"after"]


def test_orders_taken_back_from_a_producer_go_out_once_each_in_order(
    settings: Settings, topic: str, proxy: CuttableProxy
) -> None:
    sender = CommandSender(through(proxy, settings), codec=None)  # type: ignore[arg-type]
    sender.send_raw(topic, b"0", "key")
    assert sender.unacknowledged(30) == 0

    proxy.cut()
    for n in range(1, 6):
        sender.send_raw(topic, str(n).encode(), "key")
    assert sender.unacknowledged(2) == 5
    assert sender.resend_on_a_new_producer() == 5
    proxy.restore()

    assert sender.unacknowledged(60) == 0
    assert read_until(settings, topic, b"5") == [b"0", b"1", b"2", b"3", b"4", b"5"]
