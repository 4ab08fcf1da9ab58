"""Driving the service's real processes in tests: start, stop, kill, produce, read topics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from allocation.adapters.avro import AvroCodec
from allocation.adapters.kafka import message_headers
from allocation.adapters.security import kafka_client_security
from allocation.adapters.tables import batches
from allocation.config import Settings

Header = tuple[str, str | bytes | None]


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
    ) -> None:
        self.command = command
        self.module = module
        self.env = dict(env)
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float, after: int = 0) -> None:
        """Wait until the log (from character ``after`` on) matches ``pattern``."""
        wait_until(
            lambda: re.search(pattern, self.log()[after:]) is not None,
            timeout,
            f"{self.log_path.name} to show {pattern!r}",
        )


def wait_for_batches(engine: Engine, refs: list[str], timeout: float = 60) -> None:
    query = select(func.count()).select_from(batches).where(batches.c.reference.in_(refs))

    def created() -> bool:
        with engine.connect() as connection:
            return bool(connection.execute(query).scalar_one() == len(refs))

    wait_until(created, timeout, f"batches {refs} to be created")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class CommandSender:
    """Produces commands as Avro in the Confluent wire format, keyed as the contract says."""

    def __init__(self, settings: Settings, codec: AvroCodec, max_bytes: int = 1_000_000) -> None:
        self._codec = codec
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                **kafka_client_security(settings),
                "enable.idempotence": True,
                "message.max.bytes": max_bytes,
            }
        )

    def send(
        self,
        topic: str,
        record: Mapping[str, Any],
        key: str,
        headers: Iterable[Header] = (),
    ) -> None:
        self.send_raw(topic, self._codec.encode(topic, record), key, headers)

    def send_raw(
        self, topic: str, value: bytes | None, key: str, headers: Iterable[Header] = ()
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value, headers=list(headers))
                return
            except BufferError:
                self._producer.poll(0.1)

    def flush(self) -> None:
        assert self._producer.flush(60) == 0, "the broker did not acknowledge every command"


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    value: dict[str, Any] | None
    raw: bytes | None


class TopicReader:
    """Reads topics from the beginning with a throwaway group, decoding what it can."""

    def __init__(
        self,
        settings: Settings,
        codec: AvroCodec,
        topics: list[str],
        group_prefix: str = "test-reader",
    ) -> None:
        self._codec = codec
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                **kafka_client_security(settings),
                "group.id": f"{group_prefix}-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe(topics)
        self.received: list[Received] = []

    def read_until(self, done: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while not done(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s; received {len(self.received)} records"
                )
            for message in self._consumer.consume(1000, timeout=0.2):
                if message.error() is not None:
                    continue
                topic = str(message.topic())
                headers = {k: v.decode("utf-8", "replace") for k, v in message_headers(message)}
                decode_as = headers.get("source_topic", topic)
                try:
                    value = self._codec.decode(decode_as, message.value())
                except Exception:
                    value = None
                key = message.key()
                self.received.append(
                    Received(
                        topic,
                        message.partition() or 0,
                        message.offset() or 0,
                        key.decode() if isinstance(key, bytes) else str(key),
                        headers,
                        value,
                        message.value(),
                    )
                )
        return self.received

    def close(self) -> None:
        self._consumer.close()
