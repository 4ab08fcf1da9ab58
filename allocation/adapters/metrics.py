"""Every Prometheus metric of the service's processes, defined once.

Each process registers all of them but moves only its own; a scrape of the
consumer shows the relay's at zero, which costs nothing and keeps one list.
Names follow Prometheus conventions (``_total``, ``_seconds``, base units).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Seconds: from a few milliseconds (one poll under light load) to a stalled minute.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# -- consumer -----------------------------------------------------------------------
COMMANDS = Counter(
    "allocation_commands",
    "Inbound commands by what became of them: applied, duplicate (already applied), "
    "waiting (an order before its sku's first batch), rejected (a business rule said no) "
    "or dead_lettered (poison).",
    ["topic", "outcome", "reason"],
)
CONSUMER_LAG = Gauge(
    "allocation_consumer_lag",
    "Messages between the consumer's position and the end of each assigned partition "
    "(librdkafka's statistics).",
    ["topic", "partition"],
)
POLL_SECONDS = Histogram(
    "allocation_consumer_batch_seconds",
    "Time to apply one poll of messages and hand its offsets to the broker.",
    buckets=_LATENCY_BUCKETS,
)
CONSUMER_PAUSED = Gauge(
    "allocation_consumer_paused", "1 while consumption is paused by a systemic fault."
)
WAITING_ORDERS = Gauge(
    "allocation_waiting_orders",
    "Orders read before any batch of their sku, waiting for it (as of the last sweep).",
)

# -- relay ----------------------------------------------------------------------------
EVENTS_PUBLISHED = Counter(
    "allocation_events_published", "Events acknowledged by the broker.", ["topic"]
)
OUTBOX_PENDING = Gauge("allocation_outbox_pending_rows", "Outbox rows waiting to be published.")
OUTBOX_OLDEST_AGE = Gauge(
    "allocation_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox row waiting to be published (0 when none waits).",
)
OUTBOX_PARKED = Gauge(
    "allocation_outbox_parked_rows", "Outbox rows the relay gave up on, waiting for an operator."
)
RELAY_LEADER = Gauge("allocation_relay_leader", "1 on the relay that leads, 0 on a standby.")
RELAY_PAUSED = Gauge("allocation_relay_paused", "1 while publishing is paused by a systemic fault.")
PUBLISH_DELAY = Histogram(
    "allocation_event_publish_delay_seconds",
    "From the commit that wrote an event to the broker's acknowledgement of it.",
    buckets=_LATENCY_BUCKETS,
)

# -- retention (in the relay's process) ----------------------------------------------
RETENTION_PRUNED = Counter(
    "allocation_retention_pruned_rows",
    "Rows deleted by retention, by table (outbox, inbox, idempotency_keys).",
    ["table"],
)
RETENTION_BACKLOG_AGE = Gauge(
    "allocation_retention_backlog_age_seconds",
    "How long the oldest row of the table has been due for pruning, at the end of retention's "
    "last pass (0: none is due); growing from pass to pass, pruning does not keep up.",
    ["table"],
)

# -- Kafka clients (consumer and relay) ------------------------------------------------
KAFKA_CLIENTS_REPLACED = Counter(
    "allocation_kafka_clients_replaced",
    "Kafka clients given up on and replaced by a new one, by client (consumer, "
    "dead_letter_producer, relay_producer) and reason: fatal (librdkafka's fatal error), "
    "starved (the consumer fetched nothing where messages waited) or timed_out (messages "
    "not acknowledged in time).",
    ["client", "reason"],
)
# Every replacement there can be, at zero from the start: increase() over a series that
# appears at its first replacement would miss that one.
for _client, _reason in (
    ("consumer", "fatal"),
    ("consumer", "starved"),
    ("dead_letter_producer", "timed_out"),
    ("relay_producer", "fatal"),
    ("relay_producer", "timed_out"),
):
    KAFKA_CLIENTS_REPLACED.labels(_client, _reason)

# -- HTTP API -----------------------------------------------------------------------------
HTTP_REQUESTS = Counter("http_requests", "HTTP requests answered.", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)


def observe_all(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe`` each amount, with one increment per bucket rather than per amount.

    The relay observes every event it publishes; one ``observe`` each took as long as the
    event's headers. This reaches into prometheus_client's histogram (its bounds, buckets
    and sum, the same in 0.20 to 0.26); without them, each amount is observed alone.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    values = list(amounts)
    # observe() counts an amount in the first bucket whose bound it does not exceed.
    for index, count in Tally(bisect_left(bounds, amount) for amount in values).items():
        buckets[index].inc(count)
    total.inc(sum(values))


def record_lag(statistics_json: str) -> None:
    """librdkafka's statistics callback: each assigned partition's lag to the gauge."""
    statistics: dict[str, Any] = json.loads(statistics_json)
    for topic, described in statistics.get("topics", {}).items():
        for partition, numbers in described.get("partitions", {}).items():
            lag = numbers.get("consumer_lag", -1)
            # -1: not assigned here, or not known yet; the internal partition is -1 too.
            if partition != "-1" and lag >= 0:
                CONSUMER_LAG.labels(topic, partition).set(lag)
