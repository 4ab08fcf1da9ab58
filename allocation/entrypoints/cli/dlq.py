"""``allocation dlq list | replay``: inspect dead letters, send chosen ones back."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from allocation import bootstrap
from allocation.adapters import contract
from allocation.adapters.kafka import Outgoing, produce_and_wait, producer_config
from allocation.adapters.topic_reader import Received
from allocation.config import Settings
from allocation.entrypoints.cli.common import ToolError, print_json
from allocation.entrypoints.cli.console import describe, read


def dlq_list(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    codec = bootstrap.avro_codec(settings)
    count = 0
    for letter in read(settings, [settings.topic_dlq], True, args.max, args.timeout):
        print_json(describe(codec, letter, decode_as=letter.headers.get(contract.SOURCE_TOPIC)))
        count += 1
    print(f"{count} dead letter(s) in {settings.topic_dlq}", file=sys.stderr)
    return 0


def dlq_replay(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    wanted = {_coordinates(text) for text in args.at or []}

    def chosen(letter: Received) -> bool:
        if args.all:
            return True
        if args.error_type:
            return letter.headers.get(contract.ERROR_TYPE) == str(args.error_type)
        return (letter.partition, letter.offset) in wanted

    replayed = replay_dead_letters(settings, chosen, args.timeout)
    for row in replayed:
        print_json(row)
    print(f"replayed {len(replayed)} dead letter(s)", file=sys.stderr)
    return 0


def replay_dead_letters(
    settings: Settings, select: Callable[[Received], bool], idle_timeout: float
) -> list[dict[str, Any]]:
    """Send the chosen dead letters back to their source topics, as they first arrived.

    A letter that had no ``message_id`` gets one derived from its DLQ position,
    so replaying the same letter twice applies it at most once.
    """
    replayed: list[dict[str, Any]] = []
    outgoing: list[Outgoing] = []
    for letter in read(settings, [settings.topic_dlq], True, None, idle_timeout):
        source = letter.headers.get(contract.SOURCE_TOPIC)
        if not source or not select(letter):
            continue
        headers = [(k, v) for k, v in letter.headers.items() if k not in contract.DLQ_HEADERS]
        if contract.MESSAGE_ID not in letter.headers:
            headers.append((contract.MESSAGE_ID, f"dlq:{letter.partition}:{letter.offset}"))
        key = letter.key.encode() if letter.key is not None else None
        outgoing.append(Outgoing(source, key, letter.value, list(headers)))
        replayed.append(
            {"dlq_partition": letter.partition, "dlq_offset": letter.offset, "to": source}
        )
    try:
        produce_and_wait(Producer(producer_config(settings, "allocation-cli")), outgoing)
    except KafkaException as exc:
        raise ToolError(
            f"some dead letters were not acknowledged by the broker ({exc}); nothing is lost"
        ) from None
    return replayed


def _coordinates(text: str) -> tuple[int, int]:
    partition, _, offset = text.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        raise ValueError(f"--at takes PARTITION:OFFSET of the DLQ, got {text!r}")
    return int(partition), int(offset)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    dlq = sub.add_parser("dlq", help="the dead-letter queue")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="print dead letters with their reasons")
    listing.add_argument("--max", type=int)
    listing.add_argument("--timeout", type=float, default=3.0)
    listing.set_defaults(handler=dlq_list)
    replay = actions.add_parser("replay", help="send dead letters back to their topics")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("--at", nargs="+", metavar="PARTITION:OFFSET")
    which.add_argument("--error-type")
    replay.add_argument("--timeout", type=float, default=3.0)
    replay.set_defaults(handler=dlq_replay)
