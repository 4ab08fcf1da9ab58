"""Each process exports every metric that observability/metrics.txt gives it, with its labels:
what the alert rules and the dashboard query exists on a live process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from allocation.config import Settings
from testkit.processes import (
    Service,
    free_port,
    service_env,
    wait_for_batches,
    wait_until,
    wait_until_ready,
)
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku
from tests.observability import Metric, contract_metrics

# librdkafka reports lag in its periodic statistics: allow a few periods for every series.
EXPORT_TIMEOUT_S = 60


@pytest.fixture
def api_url(e2e_settings: Settings, log_dir: Path) -> Iterator[str]:
    """`allocation api` on a port of its own, answering; stopped with SIGTERM at the end."""
    port = free_port()
    api = Service(["api", "--port", str(port)], service_env(e2e_settings), log_dir, "api").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: api.running and answers(f"{url}/healthz"), 60, "the API to answer")
        yield url
    finally:
        if api.running:
            api.terminate()
        print(f"--- api log ---\n{api.log()[-4000:]}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def unexported(url: str, wanted: list[Metric]) -> list[str]:
    """What ``url`` lacks of ``wanted``: a metric absent, of another type, without a series yet,
    or with a series missing a label; empty when all is there."""
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return [f"{url}: {exc!r}"]
    if answer.status_code != 200:
        return [f"{url}: HTTP {answer.status_code}"]
    try:
        families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    except ValueError as exc:
        return [f"{url}: not Prometheus's text format: {exc}"]
    problems = []
    for metric in wanted:
        # The parser names a counter's family without _total; a histogram's count is its series.
        family = families.get(metric.name.removesuffix("_total"))
        series = metric.name + ("_count" if metric.type == "histogram" else "")
        samples = [s for s in family.samples if s.name == series] if family else []
        if family is None:
            problems.append(f"{metric.name}: not exported")
        elif family.type != metric.type:
            problems.append(f"{metric.name}: a {family.type}, not a {metric.type}")
        elif not samples:
            problems.append(f"{metric.name}: exported without any series")
        elif unlabelled := [s.labels for s in samples if not set(metric.labels) <= set(s.labels)]:
            problems.append(f"{metric.name}: series without {metric.labels}: {unlabelled[:3]}")
    return problems


def of_sku(received: list[Decoded], topic: str, sku: str) -> list[Decoded]:
    return [r for r in received if r.topic == topic and r.key == sku]


@pytest.mark.timeout(240)
def test_each_process_exports_every_metric_of_the_contract(
    e2e_settings: Settings,
    engine: Engine,
    services: dict[str, Service],
    api_url: str,
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    s = e2e_settings
    for service in services.values():
        wait_until_ready(service)

    # Commands over Kafka, applied by the consumer; their event published by the relay.
    sku, ref, orderid = random_sku("metrics"), random_batchref("metrics"), random_orderid()
    sender.create_batch(s.topic_add_batch, ref, sku, 10)
    wait_for_batches(engine, [ref])
    sender.send(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 2}, sku)
    sender.flush()
    events.read_until(lambda got: bool(of_sku(got, s.topic_line_allocated, sku)), timeout=60)

    # Requests to the API: routes and statuses of more than one kind.
    http_sku, http_ref, http_order = random_sku("http"), random_batchref("http"), random_orderid()
    batch = {"ref": http_ref, "sku": http_sku, "qty": 5}
    assert httpx.post(f"{api_url}/batches", json=batch, timeout=10).status_code == 201
    line = {"orderid": http_order, "sku": http_sku, "qty": 1}
    assert httpx.post(f"{api_url}/allocate", json=line, timeout=10).status_code == 201
    assert httpx.get(f"{api_url}/allocations/{http_order}", timeout=10).status_code == 200
    assert httpx.get(f"{api_url}/allocations/{random_orderid()}", timeout=10).status_code == 404

    endpoints = {
        "consumer": f"http://127.0.0.1:{services['consumer'].metrics_port}/metrics",
        "relay": f"http://127.0.0.1:{services['relay'].metrics_port}/metrics",
        "api": f"{api_url}/metrics",
    }
    contract = contract_metrics().values()
    wanted = {process: [m for m in contract if process in m.processes] for process in endpoints}
    assert all(wanted.values()), wanted

    def missing() -> dict[str, list[str]]:
        found = {p: unexported(url, wanted[p]) for p, url in endpoints.items()}
        return {process: problems for process, problems in found.items() if problems}

    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    while (lacking := missing()) and time.monotonic() < deadline:
        time.sleep(1)
    assert lacking == {}, "\n".join(
        f"{p}: {problem}" for p, found in lacking.items() for problem in found
    )
