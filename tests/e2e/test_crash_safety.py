"""SIGKILL the consumer and the relay at random moments: nothing lost, nothing doubled."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from allocation.adapters.group_offsets import positions
from allocation.config import Settings
from allocation.domain import commands
from testkit.processes import (
    Service,
    service_env,
    wait_for_batches,
    wait_for_leader,
    wait_until,
    wait_until_ready,
)
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.chaos_checks import expected_allocations, stored_allocations
from tests.conftest import random_suffix


@pytest.mark.timeout(600)  # eight restarts of 60 s at most, then 180 s + 120 s of reading back
def test_commands_apply_exactly_once_and_events_publish_once_through_sigkills(
    e2e_settings: Settings,
    log_dir: Path,
    engine: Engine,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    s, rng = e2e_settings, random.Random(20261127)
    tag = random_suffix()
    skus = [f"crash-{tag}-{i}" for i in range(40)]
    # Stock runs out on purpose: the outcome then depends on applying each command once.
    creates = [
        commands.CreateBatch(f"{sku}-{kind}", sku, 40, eta)
        for sku in skus
        for kind, eta in (("now", None), ("later", date.today() + timedelta(days=5)))
    ]
    orders = [
        commands.Allocate(f"order-{tag}-{n}", rng.choice(skus), rng.randint(1, 6))
        for n in range(1200)
    ]
    for create in creates:
        sender.send(
            s.topic_add_batch,
            {"ref": create.ref, "sku": create.sku, "qty": create.qty, "eta": create.eta},
            create.sku,
        )
    sender.flush()
    wait_for_batches(engine, [c.ref for c in creates])

    def produce_steadily() -> None:
        for n, order in enumerate(orders):
            sender.send(
                s.topic_allocate,
                {"orderid": order.orderid, "sku": order.sku, "qty": order.qty},
                order.sku,
            )
            if n % 50 == 49:
                sender.flush()
                time.sleep(0.2)
        sender.flush()

    producing = threading.Thread(target=produce_steadily)
    producing.start()
    kills: Counter[str] = Counter()
    ready = {
        "consumer": lambda: wait_until_ready(services["consumer"]),
        "relay": lambda: wait_for_leader(engine, services["relay"]),
    }
    while producing.is_alive() or sum(kills.values()) < 8:
        victim = rng.choice(["consumer", "relay"])
        time.sleep(rng.uniform(0.1, 0.8))  # a random moment of its work
        services[victim].kill()
        kills[victim] += 1
        services[victim].start()
        ready[victim]()
    producing.join()
    assert min(kills["consumer"], kills["relay"]) >= 2, kills

    expected = expected_allocations(creates, orders)
    assert len(expected) > 600  # most orders fit, some run out of stock

    def every_allocation_published(got: list[Decoded]) -> bool:
        ours = {
            r.headers["event_id"]
            for r in got
            if r.topic == s.topic_line_allocated and r.key in set(skus)
        }
        return len(ours) >= len(expected)

    received = events.read_until(every_allocation_published, timeout=180)

    assert Counter(stored_allocations(engine, set(skus))) == Counter(expected)
    published = {
        r.headers["event_id"]: r.value
        for r in received
        if r.topic == s.topic_line_allocated and r.key in set(skus)
    }
    as_tuples = [(v["orderid"], v["sku"], v["qty"], v["batchref"]) for v in published.values() if v]
    assert Counter(as_tuples) == Counter(expected), "each allocation exactly once, by event_id"

    # Re-deliver everything, as a crash between the database commit and the offset
    # commit would (or an operator resetting offsets): a new group reads from the start.
    replay = e2e_settings.model_copy(update={"consumer_group": f"{s.consumer_group}-replay"})
    replayer = Service(["consumer"], service_env(replay), log_dir, "replayer").start()
    try:
        wait_until(
            lambda: _caught_up(replay), timeout=120, what="the replaying consumer to catch up"
        )
    finally:
        assert replayer.terminate() == 0
    summary = re.search(r"(\d+) applied \((\d+) of them duplicates,", replayer.log())
    assert summary is not None, replayer.log()[-2000:]
    applied, duplicates = map(int, summary.groups())
    assert applied == duplicates >= len(orders) + len(creates)
    assert Counter(stored_allocations(engine, set(skus))) == Counter(expected)


def _caught_up(settings: Settings) -> bool:
    lags = positions(settings, settings.command_topics)
    return bool(lags) and all(lag.committed is not None and lag.lag == 0 for lag in lags if lag.end)
