"""Watching the event topic while a benchmark runs, and reading processes' peak memory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from allocation.adapters import contract
from allocation.adapters.avro import AvroCodec
from allocation.adapters.topic_reader import TopicReader
from allocation.config import Settings


class EventWatcher(threading.Thread):
    """Counts distinct Allocated events by event_id; can note when each order's event arrived."""

    def __init__(self, settings: Settings, codec: AvroCodec, track_orders: bool = False) -> None:
        super().__init__(daemon=True)
        self._topic = settings.topic_line_allocated
        self._codec = codec
        self._track = track_orders
        self._reader = TopicReader(settings, [self._topic], client_id="bench-watch")
        self._seen: set[str] = set()
        self.arrived: dict[str, float] = {}  # orderid -> monotonic time the event was read
        self.last_at = 0.0
        self._halt = threading.Event()

    @property
    def count(self) -> int:
        return len(self._seen)

    def run(self) -> None:
        while not self._halt.is_set():
            # What has arrived is taken at once: a wait would count as the service's latency.
            for message in self._reader.poll(0.05):
                # The naive baseline publishes no event id: its records count by position.
                event_id = message.headers.get(
                    contract.EVENT_ID, f"{message.partition}@{message.offset}"
                )
                if event_id in self._seen:
                    continue
                self._seen.add(event_id)
                self.last_at = message.at
                if self._track:
                    orderid = self._codec.decode(self._topic, message.value)["orderid"]
                    self.arrived.setdefault(orderid, message.at)
        self._reader.close()

    def wait_assigned(self, timeout: float = 30.0) -> None:
        if not self._reader.assigned.wait(timeout):
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
