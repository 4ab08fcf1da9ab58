"""Deleting the topics a test or a benchmark run made for itself, for real.

``AdminClient.delete_topics`` only queues the request: a client dropped before its
futures settle never sends it. Fired and forgotten, every run's topics stayed on the
broker (8,777 partitions on one bench stack after a day's runs), and a broker's
periodic work (high-watermark checkpoints, the log cleaner's scan) is per partition:
its CPU per command grew from one run to the next.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from allocation.adapters.kafka import admin_client
from allocation.config import Settings


def drop_topics(
    where: Settings | AdminClient, names: Iterable[str] | None = None, timeout: float = 60.0
) -> None:
    """Delete ``names`` (default: every topic of the settings' prefix) and wait until done:
    the controller confirmed each deletion and the broker's metadata lists none of them.

    A topic already gone counts as deleted.
    """
    admin = admin_client(where) if isinstance(where, Settings) else where
    if names is None:
        if not isinstance(where, Settings):
            raise TypeError("name the topics, or pass the settings whose topics to drop")
        names = where.all_topics
    wanted = list(names)
    if not wanted:
        return
    for future in admin.delete_topics(wanted, operation_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
    # The controller answers once the deletion is in its log; the broker's metadata, which
    # `list_topics` reads, replays that log a moment later and may still list the topic.
    deadline = time.monotonic() + timeout
    while set(wanted) & set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics still listed {timeout:.0f} s after their deletion")
        time.sleep(0.05)
