"""Watching the event topic while a benchmark runs, and reading processes' peak memory."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer

from allocation.adapters.avro import AvroCodec
from allocation.adapters.kafka import header
from allocation.adapters.security import kafka_client_security
from allocation.config import Settings


class EventWatcher(threading.Thread):
    """Counts distinct Allocated events by event_id; can note when each order's event arrived."""

    def __init__(self, settings: Settings, codec: AvroCodec, track_orders: bool = False) -> None:
        super().__init__(daemon=True)
        self._topic = settings.topic_line_allocated
        self._codec = codec
        self._track = track_orders
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                **kafka_client_security(settings),
                "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self._seen: set[str] = set()
        self.arrived: dict[str, float] = {}  # orderid -> monotonic time the event was read
        self.last_at = 0.0
        self._halt = threading.Event()
        self._assigned = threading.Event()

    @property
    def count(self) -> int:
        return len(self._seen)

    def run(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=lambda *_: self._assigned.set())
        while not self._halt.is_set():
            # Take what has arrived without waiting for a full batch: the wait would
            # otherwise count as the service's latency.
            ready = self._consumer.consume(1000, timeout=0) or self._consumer.consume(1, 0.05)
            for message in ready:
                if message.error() is not None:
                    continue
                now = time.monotonic()
                # The naive baseline publishes no event id: its records count by position.
                event_id = (
                    header(message, "event_id") or f"{message.partition()}@{message.offset()}"
                )
                if event_id in self._seen:
                    continue
                self._seen.add(event_id)
                self.last_at = now
                if self._track:
                    orderid = self._codec.decode(self._topic, message.value())["orderid"]
                    self.arrived.setdefault(orderid, now)
        self._consumer.close()

    def wait_assigned(self, timeout: float = 30.0) -> None:
        if not self._assigned.wait(timeout):
            raise TimeoutError("the event watcher got no partitions")

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {count} events after {timeout:.0f}s")
            time.sleep(0.01)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
