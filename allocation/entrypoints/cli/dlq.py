"""``allocation dlq list | replay``: inspect dead letters, send chosen ones back."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import KafkaException, Producer

from allocation import bootstrap
from allocation.adapters import contract
from allocation.adapters.kafka import Headers, Outgoing, produce_and_wait, producer_config
from allocation.adapters.topic_reader import Received, TopicReader
from allocation.config import Settings
from allocation.entrypoints.cli.common import ToolError, print_json
from allocation.entrypoints.cli.console import describe, read


def dlq_list(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    codec = bootstrap.avro_codec(settings)
    count = 0
    groups: Counter[str] = Counter()
    for letter in read(settings, [settings.topic_dlq], True, args.max, args.timeout):
        if args.group_by:
            groups[letter.headers.get(args.group_by, "-")] += 1
        else:
            print_json(describe(codec, letter, decode_as=letter.headers.get(contract.SOURCE_TOPIC)))
        count += 1
    for value, seen in groups.most_common():
        print_json({args.group_by: value, "count": seen})
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
    settings: Settings, select: Callable[[Received], bool], timeout: float
) -> list[dict[str, Any]]:
    """Send the chosen dead letters back to their source topics, as they first arrived.

    Only the letters in the DLQ when the replay starts are read (its end offsets are
    taken first), so a letter dead-lettered again meanwhile is not replayed again:
    the replay always ends. Each letter sent back carries a ``replay_count`` one
    higher than before. A letter without a ``message_id`` gets one derived from its
    DLQ position, so replaying the same letter twice applies it at most once. A
    letter whose source is not a command topic is refused.
    """
    replayed: list[dict[str, Any]] = []
    outgoing: list[Outgoing] = []
    for letter in read_to_end(settings, settings.topic_dlq, timeout):
        source = letter.headers.get(contract.SOURCE_TOPIC)
        if not select(letter):
            continue
        if source not in settings.command_topics:
            print(
                f"not replayed: {letter.partition}:{letter.offset} came from {source!r}, "
                "not a command topic",
                file=sys.stderr,
            )
            continue
        outgoing.append(_sent_back(letter, source))
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


def read_to_end(settings: Settings, topic: str, timeout: float) -> Iterator[Received]:
    """Every message of ``topic`` written before now, then stop; ToolError after ``timeout`` s."""
    reader = TopicReader(settings, [topic], client_id="allocation-cli")
    try:
        ends = {p: high for p, (low, high) in reader.watermarks(topic).items() if high > low}
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise ToolError(f"{topic} could not be read to its end within {timeout:.0f} s")
            for message in reader.poll(0.5):
                end = ends.get(message.partition)
                if end is None or message.offset >= end:
                    continue
                yield message
                if message.offset >= end - 1:
                    del ends[message.partition]
    finally:
        reader.close()


def _sent_back(letter: Received, source: str) -> Outgoing:
    kept = [(k, v) for k, v in letter.headers.items() if k not in contract.DLQ_HEADERS]
    headers: Headers = [(k, v) for k, v in kept if k != contract.REPLAY_COUNT]
    if contract.MESSAGE_ID not in letter.headers:
        headers.append((contract.MESSAGE_ID, f"dlq:{letter.partition}:{letter.offset}"))
    count = letter.headers.get(contract.REPLAY_COUNT, "0")
    headers.append((contract.REPLAY_COUNT, str(int(count) + 1 if count.isdigit() else 1)))
    key = letter.key.encode() if letter.key is not None else None
    return Outgoing(source, key, letter.value, headers)


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
    listing.add_argument(
        "--group-by", choices=[contract.ERROR_TYPE, contract.SOURCE_TOPIC], help="count by a header"
    )
    listing.set_defaults(handler=dlq_list)
    replay = actions.add_parser("replay", help="send dead letters back to their topics")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("--at", nargs="+", metavar="PARTITION:OFFSET")
    which.add_argument("--error-type")
    replay.add_argument(
        "--timeout", type=float, default=30.0, help="give up reading the DLQ after N seconds"
    )
    replay.set_defaults(handler=dlq_replay)
