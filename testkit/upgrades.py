"""Rolling upgrades as the tests drive them: another release's code, and orders in flight.

``release_package`` takes a release's ``allocation`` package from git; ``Builds`` runs its
processes or this checkout's; ``UpgradeTraffic`` sends bursts of orders over a few skus
and checks, once everything is read back, that each was applied and published exactly
once, in each sku's order.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, select

from allocation.adapters.tables import allocations
from allocation.config import Settings
from testkit.processes import Service, service_env
from testkit.traffic import CommandSender, Decoded

ROOT = Path(__file__).resolve().parents[1]
# The release running before this build: main before issue 15's CommandRejected. There are
# no tags yet; move it on at each release (or set UPGRADE_FROM to any git ref).
UPGRADE_FROM = os.environ.get("UPGRADE_FROM", "6c63887")
Build = Literal["old", "new"]


def release_package(ref: str, into: Path) -> Path:
    """``ref``'s ``allocation`` package extracted under ``into``; LookupError if git lacks it."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "allocation"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise LookupError(f"{ref} is not in this checkout: {archive.stderr.decode()[:200]}")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


class Builds:
    """``allocation`` processes of the previous release (``old``) or of this checkout (``new``)."""

    def __init__(
        self,
        settings: Settings,
        previous: Path,
        log_dir: Path,
        old_settings: Settings | None = None,
    ) -> None:
        self.settings = settings
        self.old_settings = old_settings or settings  # when the previous release's differ
        self.previous = previous
        self.log_dir = log_dir

    def service(
        self,
        command: list[str],
        build: Build,
        name: str,
        settings: Settings | None = None,
        **env: str,
    ) -> Service:
        """Not started. ``python -m`` runs the package found in its working directory."""
        settings = settings or (self.old_settings if build == "old" else self.settings)
        environment = service_env(settings, **env)
        if build == "old":
            environment["PYTHONPATH"] = str(self.previous)
        cwd = self.previous if build == "old" else ROOT
        return Service(command, environment, self.log_dir, name, cwd=cwd)

    def process(
        self, kind: str, build: Build, name: str = "", settings: Settings | None = None
    ) -> Service:
        """A consumer or a relay of its own instance id, not started."""
        instance = name or f"{build}-{kind}"
        return self.service([kind], build, instance, settings, CONSUMER_INSTANCE_ID=instance)


class UpgradeTraffic:
    """Orders over six skus of ample stock, sent in bursts; the sku order of each remembered."""

    def __init__(self, settings: Settings, sender: CommandSender, tag: str) -> None:
        self.s = settings
        self.sender = sender
        self.skus = [f"{tag}-sku-{n}" for n in range(6)]
        self.refs = [f"{tag}-batch-{n}" for n in range(6)]
        self.orders: list[str] = []
        self._tag = tag
        self._by_sku: dict[str, list[str]] = defaultdict(list)

    def stock(self) -> None:
        for ref, sku in zip(self.refs, self.skus, strict=True):
            record = {"ref": ref, "sku": sku, "qty": 10_000, "eta": None}
            self.sender.send(self.s.topic_add_batch, record, sku)
        self.sender.flush()

    def allocate(self, orderid: str, sku: str) -> None:
        record = {"orderid": orderid, "sku": sku, "qty": 1}
        headers = [("message_id", orderid.encode())]
        self.sender.send(self.s.topic_allocate, record, sku, headers=headers)

    def burst(self, size: int) -> list[str]:
        """``size`` orders over the skus in turn, acknowledged by the broker; their ids."""
        sent = []
        for n in range(size):
            orderid, sku = f"{self._tag}-order-{len(self.orders)}", self.skus[n % len(self.skus)]
            self.allocate(orderid, sku)
            self.orders.append(orderid)
            self._by_sku[sku].append(orderid)
            sent.append(orderid)
        self.sender.flush()
        return sent

    def rejected_by(self, build: Build) -> str:
        """The id of the unknown-sku order meant for ``build``'s consumer."""
        return f"{self._tag}-applied-by-the-{build}-consumer"

    def unknown_sku_order(self, build: Build) -> None:
        """An order the consumer rejects: the previous release dead-letters it, this one
        publishes a CommandRejected. Which happened tells which build applied it."""
        self.allocate(self.rejected_by(build), f"{self._tag}-unknown-sku")
        self.sender.flush()

    def sentinel(self) -> None:
        """Poison behind everything on the first sku's partition: once it is dead-lettered,
        all sent before it on that partition was read."""
        self.sender.send_raw(
            self.s.topic_allocate, b"sentinel", self.skus[0], headers=[("sentinel", b"1")]
        )
        self.sender.flush()

    def everything_out(self, got: list[Decoded]) -> bool:
        """Every order published, a rejection published and the sentinel dead-lettered."""
        seen = {
            r.value["orderid"] for r in got if r.value and r.topic == self.s.topic_line_allocated
        }
        rejected = any(r.topic == self.s.topic_command_rejected for r in got)
        return set(self.orders) <= seen and rejected and any("sentinel" in r.headers for r in got)

    def assert_exactly_once(self, received: list[Decoded], engine: Engine) -> None:
        """Each order published once (by ``event_id``) and allocated once; per sku, the
        events' first publications follow the order the commands were sent in."""
        published: dict[str, str] = {}
        in_topic_order: dict[str, list[str]] = defaultdict(list)
        for r in received:
            if r.topic != self.s.topic_line_allocated or not r.value:
                continue
            if r.headers["event_id"] not in published:
                in_topic_order[r.value["sku"]].append(r.value["orderid"])
            published[r.headers["event_id"]] = r.value["orderid"]
        assert Counter(published.values()) == Counter(self.orders), "each order published once"
        assert dict(in_topic_order) == dict(self._by_sku), "each sku's events in command order"
        query = select(allocations.c.orderid).where(allocations.c.sku.in_(self.skus))
        with engine.connect() as connection:
            stored = Counter(connection.execute(query).scalars())
        assert stored == Counter(self.orders), "each order allocated once"

    def assert_rejections(self, received: list[Decoded]) -> None:
        """The old consumer dead-lettered its rejection, the new one published a
        CommandRejected; nothing else but the sentinel was dead-lettered."""
        letters = [r for r in received if r.topic == self.s.topic_dlq]
        assert [(r.headers.get("error_type"), r.headers.get("message_id")) for r in letters] == [
            ("InvalidSku", self.rejected_by("old")),
            ("UndecodableMessage", None),  # the sentinel
        ]
        [rejection] = [r.value for r in received if r.topic == self.s.topic_command_rejected]
        assert rejection is not None
        # The new build's inbox identity names the topic (README, "Inbox identity").
        expected = f"id:{self.s.topic_allocate}:{self.rejected_by('new')}"
        assert rejection["causation_id"] == expected


def assert_clean_logs(processes: list[Service]) -> None:
    """No traceback and no ERROR line in any process's log."""
    for p in processes:
        assert "Traceback" not in p.log(), p.log()[-3000:]
        assert " ERROR " not in p.log(), p.log()[-3000:]
