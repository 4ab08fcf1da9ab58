"""``allocation offsets show | reset``: where the consumer group reads next, and moving it.

PostgreSQL's offsets are the truth (saved with the data they describe); Kafka's
committed offsets are a copy for lag monitoring and Kafka's tools. A reset
writes both, and only while no consumer of the group runs: a running one would
overwrite it with its next poll.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from allocation.adapters import group_offsets, offsets
from allocation.adapters.group_offsets import KafkaPosition
from allocation.config import Settings
from allocation.entrypoints.cli.common import ToolError, engine
from allocation.service_layer.ports import ConsumedOffset


@dataclass(frozen=True)
class Row:
    """One partition: Kafka's view, PostgreSQL's offset, and where the group would start."""

    kafka: KafkaPosition
    stored: int | None

    @property
    def start(self) -> int:
        """Where a consumer assigned this partition now starts reading."""
        if self.stored is not None:
            return self.stored
        return self.kafka.committed if self.kafka.committed is not None else self.kafka.earliest

    @property
    def lag(self) -> int:
        return max(0, self.kafka.end - self.start)


def _rows(settings: Settings, topics: Iterable[str]) -> list[Row]:
    kafka = group_offsets.positions(settings, topics)
    with engine(settings) as pool, pool.connect() as connection:
        stored = offsets.of_group(connection, settings.consumer_group)
    return [Row(k, stored.get((k.topic, k.partition))) for k in kafka]


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def show(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    rows = _rows(settings, args.topic or settings.command_topics)
    print(f"consumer group {settings.consumer_group}")
    print(f"{'topic':<32} {'part':>4} {'postgresql':>10} {'kafka':>10} {'log end':>10} {'lag':>8}")
    for row in rows:
        k = row.kafka
        print(
            f"{k.topic:<32} {k.partition:>4} {_text(row.stored):>10} {_text(k.committed):>10}"
            f" {k.end:>10} {row.lag:>8}"
        )
    return 0


def when(text: str) -> datetime:
    """An ISO-8601 time with its time zone (argparse's type for --to-datetime)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (say 2026-11-28T07:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (say ...Z or ...+01:00)")
    return moment


def _targets(
    settings: Settings, args: argparse.Namespace, rows: list[Row]
) -> dict[tuple[str, int], int]:
    partitions = [(r.kafka.topic, r.kafka.partition) for r in rows]
    if args.to_datetime is not None:
        epoch_ms = int(args.to_datetime.timestamp() * 1000)
        return group_offsets.offsets_at(settings, partitions, epoch_ms)
    if args.to_earliest:
        return {(r.kafka.topic, r.kafka.partition): r.kafka.earliest for r in rows}
    return {(r.kafka.topic, r.kafka.partition): r.kafka.end for r in rows}


def describe(row: Row, target: int) -> str:
    """One line of the plan: what moving this partition to ``target`` means."""
    k = row.kafka
    moved = target - row.start
    if moved < 0:
        effect = f"reads {-moved} message(s) again (the inbox skips those it still remembers)"
    elif moved > 0:
        effect = f"skips {moved} message(s) never to be applied"
    else:
        effect = "no change"
    return f"{k.topic}[{k.partition}]: {row.start} -> {target}: {effect}"


def reset(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    rows = _rows(settings, args.topic or settings.command_topics)
    if not rows:
        raise ToolError("none of the topics exists: nothing to reset")
    targets = _targets(settings, args, rows)
    for row in rows:
        print(describe(row, targets[(row.kafka.topic, row.kafka.partition)]))
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    running = group_offsets.members(settings, settings.consumer_group)
    if running:
        raise ToolError(
            f"consumer group {settings.consumer_group} has {running} active member(s): stop"
            " every consumer of the group first (they would overwrite the reset); nothing changed"
        )
    group = settings.consumer_group
    with engine(settings) as pool, pool.begin() as connection:
        offsets.write(connection, [ConsumedOffset(group, t, p, o) for (t, p), o in targets.items()])
    group_offsets.commit(settings, group, targets)
    print(f"{len(targets)} partition(s) of group {group} reset, in PostgreSQL and in Kafka")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    parser = sub.add_parser("offsets", help="the consumer group's offsets: show or reset them")
    actions = parser.add_subparsers(dest="action", required=True)
    shown = actions.add_parser("show", help="PostgreSQL's and Kafka's offsets, log end, lag")
    shown.add_argument("--topic", action="append", help="a command topic (default: all)")
    shown.set_defaults(handler=show)
    moved = actions.add_parser(
        "reset", help="move the group's offsets (consumers stopped); --dry-run prints the plan"
    )
    to = moved.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-datetime", type=when, metavar="ISO", help="first message at/after it")
    to.add_argument("--to-earliest", action="store_true", help="the oldest message kept")
    to.add_argument("--to-latest", action="store_true", help="the log end: skip everything")
    moved.add_argument("--topic", action="append", help="a command topic (default: all)")
    moved.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    moved.set_defaults(handler=reset)
