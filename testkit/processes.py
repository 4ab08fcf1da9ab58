"""The service's processes as a test or benchmark drives them, and waits on their state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from allocation.adapters.tables import allocations, batches
from allocation.config import Settings
from allocation.entrypoints.status import relay_leader_backend


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment that makes ``allocation`` use exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            env[name.upper()] = value.get_secret_value()
        elif name == "kafka_config":
            env.update({f"KAFKA_CONFIG_{k.upper().replace('.', '_')}": v for k, v in value.items()})
        elif value is not None:
            env[name.upper()] = str(value)
    env.update(extra)
    return env


class Service:
    """One ``allocation <command>`` process; its output goes to a log file."""

    def __init__(
        self,
        command: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        name: str,
        module: str = "allocation.entrypoints.cli",
        cwd: Path | None = None,
    ) -> None:
        self.command = command
        self.module = module
        # `python -m` puts the working directory first on sys.path: another build's
        # checkout there runs that build's code.
        self.cwd = cwd
        self.env = dict(env)
        # Each process serves /readyz and /metrics on a port of its own (the API on its own).
        self.metrics_port = free_port()
        for variable in ("CONSUMER_METRICS_PORT", "RELAY_METRICS_PORT", "API_PORT"):
            self.env[variable] = str(self.metrics_port)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Service:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.command],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to end by itself; its exit code."""
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1
) -> None:
    """Poll ``condition`` every ``every`` s; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def leading_relay_pid(engine: Engine) -> int | None:
    """The pid of the relay process holding the leader lock in this database, if any."""
    backend = relay_leader_backend(engine)
    # The relay names its lock connection allocation-relay-<pid>.
    suffix = str(backend.application_name if backend else "").rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else None


def wait_for_leader(engine: Engine, relay: Service, timeout: float = 60) -> None:
    """Wait until ``relay`` holds the leader lock."""
    wait_until(
        lambda: leading_relay_pid(engine) == relay.pid, timeout, f"relay {relay.pid} to lead"
    )


def readiness(service: Service) -> tuple[int, str]:
    """The process's own answer on /readyz: (HTTP status, reason); (0, why) if none came."""
    url = f"http://127.0.0.1:{service.metrics_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, json.loads(answer.read())["reason"]
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())["reason"]
    except OSError as exc:
        return 0, str(exc)


def wait_until_ready(service: Service, timeout: float = 60) -> None:
    """Wait until the process says it is ready (a consumer: partitions assigned)."""
    wait_until(
        lambda: service.running and readiness(service)[0] == 200,
        timeout,
        f"{service.log_path.stem} (pid {service.pid}) to be ready",
    )


def wait_for_batches(engine: Engine, refs: list[str], timeout: float = 60) -> None:
    """Wait until every batch in ``refs`` exists."""
    query = select(func.count()).select_from(batches).where(batches.c.reference.in_(refs))

    def created() -> bool:
        with engine.connect() as connection:
            return bool(connection.execute(query).scalar_one() == len(refs))

    wait_until(created, timeout, f"batches {refs} to be created")


def all_allocated(engine: Engine, orderids: list[str]) -> bool:
    """Whether every order in ``orderids`` has its allocation row."""
    query = select(func.count()).select_from(allocations).where(allocations.c.orderid.in_(orderids))
    with engine.connect() as connection:
        return bool(connection.execute(query).scalar_one() == len(orderids))


def run_snippet(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Python code in a fresh interpreter that imports what this one does (a process-wide
    setting, say, tried where it cannot leak into the tests)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
