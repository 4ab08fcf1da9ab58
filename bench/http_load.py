"""``POST /allocate`` under load: requests a second with many clients, latency with one.

The API and the relay run as in production; every allocation the API commits must come back as
an event on ``line-allocated`` before a run counts (events are counted on the way out). The load
generator shares the two cores, so its own CPU is reported beside the figures: Debian's ``wrk``
with a Lua script writing each request's body when it is installed (``apt-get install wrk``),
otherwise the benchmark's own asyncio client (plain HTTP/1.1 keep-alive over sockets).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import func, select

from allocation.adapters.tables import allocations
from allocation.bootstrap import avro_codec
from bench import cpu
from bench.environment import BenchDatabase, run_topics
from bench.pipeline import LOGS, cpu_groups, processes
from bench.scenarios import Sizes
from bench.stats import percentiles
from bench.watch import EventWatcher
from bench.workload import seed_skus

WRK_SCRIPT = """
-- POST /allocate, a new order each time, the skus in turn. Each thread stops after its share
-- and says so on stdout; the benchmark then ends the run (wrk alone would run its whole -d).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

local skus = {%(skus)s}
local share, tag, sent, counted, threads = %(share)d, "%(tag)s", 0, 0, {}
thread_no, answered, first_at, done_at = 0, 0, 0, 0  -- globals: done() reads them per thread

function setup(thread)
  counted = counted + 1
  thread:set("thread_no", counted)
  table.insert(threads, thread)
end

function request()
  if sent == 0 then first_at = now() end
  sent = sent + 1
  local body = string.format('{"orderid":"%%s-%%d-%%d","sku":"%%s","qty":1}',
                             tag, thread_no, sent, skus[(sent + thread_no) %% #skus + 1])
  return wrk.format("POST", "/allocate", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  answered = answered + 1
  if answered == share then
    done_at = now()
    io.write("share answered\\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local first, last = math.huge, 0
  for _, thread in ipairs(threads) do
    first = math.min(first, thread:get("first_at"))
    last = math.max(last, thread:get("done_at"))
  end
  local e = summary.errors
  io.write(string.format('{"requests": %%d, "seconds": %%f, "non_2xx": %%d, "errors": %%d, ' ..
    '"p50_us": %%d, "p99_us": %%d}\\n', share * #threads, last - first, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def http_load(db: BenchDatabase, sizes: Sizes, client: str | None = None) -> dict[str, Any]:
    """The figures with ``sizes.http_clients`` clients, then with one."""
    client = client or ("wrk" if shutil.which("wrk") else "asyncio")
    with run_topics(db.settings) as settings:
        skus = seed_skus(db, sizes.http_skus)
        watcher = EventWatcher(settings, avro_codec(settings))
        watcher.start()
        watcher.wait_assigned()
        query = select(func.count()).select_from(allocations).where(allocations.c.sku.in_(skus))

        def committed() -> int:
            with db.engine.connect() as connection:
                return int(connection.execute(query).scalar_one())

        results: dict[str, Any] = {}
        with processes(db, settings, ["api", "relay"]) as running:
            port = running["api"].metrics_port
            for clients in (sizes.http_clients, 1):
                with cpu.metered(cpu_groups(db, running)) as meter, meter.window() as window:
                    already = committed()
                    load = generate(client, port, skus, sizes.http_requests, clients)
                    # Requests still in flight when the generator stopped may commit after it.
                    done = settled(committed) - already
                    watcher.wait_for(already + done, 120)  # the earlier loads' are all out
                results[f"clients_{clients}"] = {
                    **load,
                    "committed": done,
                    "events_out": watcher.count - already,
                    "cpu_us_per_request": window.per_unit_us(max(done, 1)),
                    "cpu_groups_emptied": window.emptied,
                }
        watcher.stop()
    return results


def settled(count: Callable[[], int], quiet: float = 0.5, timeout: float = 30.0) -> int:
    """``count()`` once it stopped changing for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last = count()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = count()
        if now == last:
            return now
        last = now
    return last


def generate(
    client: str, port: int, skus: list[str], requests: int, clients: int
) -> dict[str, Any]:
    if client == "wrk":
        return run_wrk(port, skus, requests, clients)
    return run_asyncio(port, skus, requests, clients)


def run_wrk(port: int, skus: list[str], requests: int, clients: int) -> dict[str, Any]:
    threads = min(clients, 2)  # one per core
    script = LOGS / f"allocate-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "skus": ", ".join(f'"{s}"' for s in skus),
            "share": requests // threads,
            "tag": f"w-{uuid.uuid4().hex[:6]}",
        }
    )
    output = script.with_suffix(".out")
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                *("wrk", "-t", str(threads), "-c", str(clients), "-d", "600s"),
                *("--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # Once every thread had its share, SIGINT makes wrk print its summary and exit.
            while process.poll() is None and output.read_text().count("share answered") < threads:
                time.sleep(0.02)
            process.send_signal(signal.SIGINT)
            # wait4 gives the child's own CPU: wrk shares the two cores with what it measures.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if process.poll() is None:  # the benchmark was interrupted: no wrk left behind
                process.kill()
                process.wait()
    text = output.read_text()
    summaries = [line for line in text.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not summaries:
        raise RuntimeError(f"wrk failed (exit code {process.returncode}):\n{text}")
    summary = json.loads(summaries[-1])
    cpu_s = usage.ru_utime + usage.ru_stime
    return {
        "generator": f"{wrk_version()} -t{threads} -c{clients}, Lua body per request",
        "clients": clients,
        "requests": summary["requests"],
        # From each thread's first request to the last thread's last answer.
        "requests_per_s": summary["requests"] / summary["seconds"],
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "non_2xx": summary["non_2xx"],
        "errors": summary["errors"],
        "generator_cpu_s": cpu_s,
        "generator_cpu_us_per_request": cpu_s / max(summary["requests"], 1) * 1e6,
    }


def wrk_version() -> str:
    shown = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (shown.stdout or shown.stderr).splitlines()[0]  # "wrk debian/4.1.0-3+b2 [epoll] ..."
    return " ".join(first.split()[:2])


def run_asyncio(port: int, skus: list[str], requests: int, clients: int) -> dict[str, Any]:
    tag = f"a-{uuid.uuid4().hex[:6]}"
    bodies = (
        json.dumps({"orderid": f"{tag}-{n}", "sku": skus[n % len(skus)], "qty": 1}).encode()
        for n in range(requests)
    )
    seconds: list[float] = []
    statuses: list[int] = []
    cpu_before, started = time.thread_time(), time.monotonic()
    asyncio.run(_clients(port, bodies, clients, seconds, statuses))
    elapsed, cpu_s = time.monotonic() - started, time.thread_time() - cpu_before
    spread = percentiles(seconds)
    return {
        "generator": f"bench's asyncio client, {clients} connections",
        "clients": clients,
        "requests": len(seconds),
        "requests_per_s": len(seconds) / elapsed,
        "p50_ms": spread["p50"] * 1000,
        "p99_ms": spread["p99"] * 1000,
        "non_2xx": sum(1 for s in statuses if not 200 <= s < 300),
        "errors": 0,
        "generator_cpu_s": cpu_s,
        "generator_cpu_us_per_request": cpu_s / max(len(seconds), 1) * 1e6,
    }


async def _clients(
    port: int, bodies: Iterator[bytes], clients: int, seconds: list[float], statuses: list[int]
) -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for body in bodies:  # shared: each connection takes the next body
            started = time.perf_counter()
            writer.write(
                b"POST /allocate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            seconds.append(time.perf_counter() - started)
            statuses.append(status)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(one() for _ in range(clients)))
