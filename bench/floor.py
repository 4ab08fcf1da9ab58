"""The floor under the HTTP figures: what this machine allows before the API adds anything.

Issue 14 asks for ``POST /allocate`` at 2,000 requests/s with 16 clients and a p50 of 2 ms
with one, and, where a target is out of reach, for where the floor is. These figures measure
that floor, in the same run as the HTTP figures, so a verdict can be checked on any machine:

- ``pg_round_trip_us``: a ``SELECT 1`` over psycopg2, the price of each round trip a
  transaction makes; ``pg_durable_commit_us``: a transaction that commits in one round trip and
  waits for its WAL to reach the disk, as every command's transaction does.
- ``http_noop_*``: the API's HTTP stack (uvicorn, with the parser and event loop it picks) in
  front of an app that does nothing but read the JSON body and answer: the least any request
  costs here, loaded by the same generator as the API.
- ``uow_group_*``: the API's own unit of work applying groups of ``Allocate`` in-process,
  as its group-commit worker does, with no HTTP and nothing else competing for the
  interpreter: a lone request's group (1), and the largest group 16 clients can form (16).

From them, two bounds: a lone request takes at least the no-op request plus a group of one
(``http_p50_floor_ms_1_client``), and the worker, which applies one group at a time, answers
at most 16 requests per group of 16 (``http_worker_ceiling_requests_per_s_16_clients``).
Both are generous: in the API the two share one interpreter and the machine's two cores with
PostgreSQL, the broker and the relay.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2

from allocation.bootstrap import bootstrap
from allocation.config import Settings
from allocation.domain import commands
from allocation.service_layer.unit_of_work import Envelope
from bench.cpu import proc_seconds
from bench.environment import BenchDatabase, run_topics
from bench.http_load import generate
from bench.scenarios import Sizes
from bench.workload import seed_skus
from testkit.processes import free_port

SAMPLES = 500
GROUP_ROUNDS = 200
ROOT = Path(__file__).resolve().parents[1]


def floor(db: BenchDatabase, sizes: Sizes, client: str | None) -> dict[str, Any]:
    with run_topics(db.settings) as settings:
        skus = seed_skus(db, sizes.http_skus)
        return {
            **database_floor(settings, skus[0]),
            "http_noop": noop_http(sizes, skus, client),
            "uow_groups": unit_of_work_groups(settings, skus, (1, sizes.http_clients)),
        }


def database_floor(settings: Settings, sku: str) -> dict[str, float]:
    connection = psycopg2.connect(settings.database_url)
    try:
        connection.autocommit = True  # each string is one round trip, BEGIN and COMMIT within it
        cursor = connection.cursor()
        return {
            "pg_round_trip_us": _median_us(lambda: cursor.execute("SELECT 1")),
            # A row written (to the value it has): the commit waits for its WAL to be flushed.
            "pg_durable_commit_us": _median_us(
                lambda: cursor.execute(
                    "BEGIN; UPDATE products SET version_number = version_number WHERE sku = %s;"
                    " COMMIT",
                    (sku,),
                )
            ),
        }
    finally:
        connection.close()


def _median_us(call: Callable[[], object], samples: int = SAMPLES) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def unit_of_work_groups(
    settings: Settings, skus: list[str], sizes: tuple[int, ...]
) -> dict[str, dict[str, float]]:
    """Median wall and thread CPU of ``handle_many`` for groups of each size, as the API's
    worker applies them (HTTP requests: no inbox check)."""
    application = bootstrap(settings)
    tag = uuid.uuid4().hex[:6]
    sent = 0

    def group(size: int) -> list[tuple[commands.Command, Envelope]]:
        nonlocal sent
        items: list[tuple[commands.Command, Envelope]] = []
        for _ in range(size):
            sent += 1
            command = commands.Allocate(f"floor-{tag}-{sent}", skus[sent % len(skus)], 1)
            items.append((command, Envelope(f"http:{uuid.uuid4()}", deduplicate=False)))
        return items

    measured: dict[str, dict[str, float]] = {}
    try:
        for size in sizes:
            for _ in range(20):  # prepared statements, pool, caches
                application.bus.handle_many(group(size))
            walls, cpus = [], []
            for _ in range(GROUP_ROUNDS):
                items = group(size)
                wall, cpu = time.perf_counter(), time.thread_time()
                application.bus.handle_many(items)
                cpus.append(time.thread_time() - cpu)
                walls.append(time.perf_counter() - wall)
            measured[f"group_{size}"] = {
                "wall_ms": statistics.median(walls) * 1e3,
                "cpu_ms": statistics.median(cpus) * 1e3,
            }
    finally:
        application.close()
    return measured


NOOP_APP = "bench.floor:noop"


async def noop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that reads a POST's JSON body and answers 201 with a small JSON body."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    line = json.loads(body)
    answer = json.dumps({"batchref": f"{line['sku']}-b", "detail": None}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def noop_http(sizes: Sizes, skus: list[str], client: str | None) -> dict[str, Any]:
    client = client or "wrk"
    measured: dict[str, Any] = {}
    with _noop_server() as (port, cpu_s):
        for clients in (sizes.http_clients, 1):
            before = cpu_s()
            load = generate(client, port, skus, sizes.http_requests, clients)
            used = cpu_s() - before
            measured[f"clients_{clients}"] = {
                **load,
                "server_cpu_us_per_request": used / max(load["requests"], 1) * 1e6,
            }
    return measured


@contextlib.contextmanager
def _noop_server() -> Iterator[tuple[int, Callable[[], float]]]:
    """uvicorn as ``allocation api`` runs it (its default parser and loop, no access log)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", NOOP_APP, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    # From this checkout, whatever the working directory: the module is this file's.
    server = subprocess.Popen(command, cwd=ROOT)
    try:
        _wait_listening(port, server)
        yield port, lambda: _cpu_s(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_listening(port: int, server: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the no-op HTTP server exited with {server.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the no-op HTTP server did not listen on {port} in {timeout:g} s")


def _cpu_s(pid: int) -> float:
    seconds = proc_seconds(pid)
    if seconds is None:
        raise RuntimeError("the no-op HTTP server exited while it was measured")
    return seconds


def floor_figures(found: dict[str, Any], http: dict[str, Any] | None) -> dict[str, float]:
    """The floor's figures; with the HTTP figures of the same run, the machine's CPU bound too:
    how many requests its cores could serve at the CPU each request took them."""
    clients = max(int(key.removeprefix("clients_")) for key in found["http_noop"])
    ceiling = {}
    if http is not None and f"clients_{clients}" in http:
        used = http[f"clients_{clients}"]["cpu_us_per_request"]
        # Less the benchmark's own reading of the events (its generator is not counted there).
        service_us = used["total"] - used.get("bench", 0.0)
        ceiling = {
            f"http_cpu_ceiling_requests_per_s_{clients}_clients": _cores() * 1e6 / service_us
        }
    noop_many, noop_one = found["http_noop"][f"clients_{clients}"], found["http_noop"]["clients_1"]
    one, many = found["uow_groups"]["group_1"], found["uow_groups"][f"group_{clients}"]
    return {
        "pg_round_trip_us": found["pg_round_trip_us"],
        "pg_durable_commit_us": found["pg_durable_commit_us"],
        "http_noop_p50_ms_1_client": noop_one["p50_ms"],
        f"http_noop_requests_per_s_{clients}_clients": noop_many["requests_per_s"],
        f"http_noop_cpu_us_per_request_{clients}_clients": noop_many["server_cpu_us_per_request"],
        "uow_group_1_ms": one["wall_ms"],
        "uow_group_1_cpu_ms": one["cpu_ms"],
        f"uow_group_{clients}_ms": many["wall_ms"],
        f"uow_group_{clients}_cpu_ms": many["cpu_ms"],
        "http_p50_floor_ms_1_client": noop_one["p50_ms"] + one["wall_ms"],
        f"http_worker_ceiling_requests_per_s_{clients}_clients": clients / many["wall_ms"] * 1e3,
        **ceiling,
    }


def _cores() -> int:
    return len(os.sched_getaffinity(0))
