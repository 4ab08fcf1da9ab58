"""Whether a run's figures are a quiet, steady machine's: its speed through the run, its servers.

This project's machine is a share of a host whose speed swings with the hour, and within a
minute: the same build measured 148 µs of CPU per command one night and 232 the next day, and a
fixed piece of Python took 79 ms, then 40, a few seconds apart. A figure missed on a slow hour
is not a slower build. So a run times that fixed piece (the yardstick) every ``EVERY_S`` seconds
from start to end, in an interpreter of its own; runs of different hours compare through its
median. And a run whose servers were restarted under it (another suite's fault tests on the
same stack) measured nothing: the stack's server pids at the end must be those of the start.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.servers import REPO_ROOT, Servers, find_servers

EVERY_S = 15.0
# The yardstick's 90th percentile this much over its 10th: the run had two machines' speeds.
SPREAD = 1.5


def _workload() -> int:
    """Fixed interpreter work (dicts, sorting, strings, integers), 35 to 80 ms on this machine."""
    table = {f"sku-{n}": n * 7 % 1009 for n in range(40_000)}
    ordered = sorted(table.items(), key=lambda item: (item[1], item[0]))
    text = ",".join(name for name, _ in ordered[:5_000])
    return sum(value for _, value in ordered) + len(text)


def _sample_forever(every_s: float) -> None:
    """One timing (ms of CPU) a line, every ``every_s`` seconds, until stopped or orphaned."""
    gc.disable()  # the interpreter's speed, not its collector's
    parent = os.getppid()
    while os.getppid() == parent:  # a benchmark killed outright leaves no sampler behind
        # CPU time, not wall time: while the pipeline keeps both cores busy, the sampler's
        # wait for one is not the machine's speed.
        started = time.thread_time()
        _workload()
        print(f"{(time.thread_time() - started) * 1000:.2f}", flush=True)
        time.sleep(every_s)


@contextmanager
def yardstick(every_s: float = EVERY_S) -> Iterator[list[float]]:
    """The yardstick's timings (ms), sampled while the block runs; filled in when it ends."""
    sampler = subprocess.Popen(
        [sys.executable, "-c", f"from bench import machine; machine._sample_forever({every_s})"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    samples: list[float] = []
    try:
        yield samples
    finally:
        sampler.terminate()
        out, _ = sampler.communicate(timeout=30)
        samples.extend(float(line) for line in out.split())


def speed_figures(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    return {"machine_yardstick_ms": statistics.median(samples)}


def speed_warnings(samples: list[float]) -> list[str]:
    if len(samples) < 2:
        return []
    quick, slow = _p10_p90(samples)
    if slow <= SPREAD * quick:
        return []
    return [
        f"machine: the yardstick's 10th percentile was {quick:.0f} ms and its 90th {slow:.0f} "
        f"({len(samples)} samples): the machine's speed changed during the run"
    ]


def _p10_p90(samples: list[float]) -> tuple[float, float]:
    """The 10th and the 90th percentiles: a lone quick or slow sample moves neither."""
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return deciles[0], deciles[-1]


def moved(before: Servers, now: Servers) -> list[str]:
    """The servers whose process is not the one measured at the start."""
    return [
        f"{name} pid {getattr(before, name)} is now {getattr(now, name)}"
        for name in ("broker", "registry", "postmaster")
        if getattr(before, name) != getattr(now, name)
    ]


def restarted(before: Servers | None) -> list[str]:
    """What happened to the stack's servers since ``before``: restarted, or gone."""
    if before is None:  # not found at the start either: nothing to compare
        return []
    try:
        now = find_servers(before.home)
    except LookupError as missing:
        return [str(missing)]
    return moved(before, now)


def restart_warning(changes: list[str]) -> str:
    return (
        f"servers: restarted during the run ({'; '.join(changes)}): something else uses this "
        "stack (a test suite's fault scenarios stop and start its servers), and every figure "
        "measured after that is suspect"
    )
