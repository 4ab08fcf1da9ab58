"""``allocation produce | consume``: send one command, watch a topic."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from allocation import bootstrap
from allocation.adapters import contract
from allocation.adapters.avro import AvroCodec, PoisonMessage
from allocation.adapters.kafka import (
    Headers,
    Outgoing,
    produce_and_wait,
    producer_config,
)
from allocation.adapters.topic_reader import Received, TopicReader
from allocation.adapters.wire import COMMAND_DECODERS, Record, check_command
from allocation.config import Settings
from allocation.domain.errors import DomainError
from allocation.entrypoints.cli.common import ToolError, command, print_json
from allocation.service_layer.unit_of_work import require_correlation_id

# The longest id the consumer's inbox takes (longer ones are ignored: the message is then
# known by its offset), less room for the -N of a line of stdin.
MESSAGE_ID_MAX = 190


def produce(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    """One command from flags or --json; with ``-``, one per JSON line of stdin, all or none."""
    if extra == ["-"]:
        records = [
            _line_record(settings, args.topic, n, line)
            for n, line in enumerate(sys.stdin, start=1)
            if line.strip()
        ]
    else:
        records = [record_from_cli(settings, args.topic, args.json, extra)]
    name = contract.topic_records(settings)[args.topic]
    if not args.no_check:
        for n, record in enumerate(records, start=1):
            try:
                check_command(COMMAND_DECODERS[name](record))
            except DomainError as exc:
                where = f"line {n}: " if extra == ["-"] else ""
                raise ToolError(f"{where}{exc}; nothing was sent") from None
        if args.correlation_id is not None:
            require_correlation_id(args.correlation_id)
    message_id = chosen_message_id(args.message_id)
    ids = (
        [message_id]
        if extra != ["-"]
        else [f"{message_id}-{n}" for n in range(1, len(records) + 1)]
    )
    codec = bootstrap.avro_codec(settings)
    outgoing = []
    for record, record_id in zip(records, ids, strict=True):
        headers: Headers = [(contract.MESSAGE_ID, record_id.encode())]
        if args.correlation_id:
            headers.append((contract.CORRELATION_ID, args.correlation_id.encode()))
        key = args.key or str(record[contract.key_field(name)])
        outgoing.append(
            Outgoing(args.topic, key.encode(), codec.encode(args.topic, record), headers)
        )
    producer = Producer(producer_config(settings, "allocation-cli"))
    try:
        sent = produce_and_wait(producer, outgoing)
    except KafkaException as exc:
        raise ToolError(not_sent(args.topic, exc.args[0], message_id)) from None
    for message_id, message, acked in zip(ids, outgoing, sent, strict=True):
        coordinates = {
            "topic": args.topic,
            "partition": acked.partition(),
            "offset": acked.offset(),
        }
        print_json({**coordinates, "key": (message.key or b"").decode(), "message_id": message_id})
    return 0


def chosen_message_id(given: str | None) -> str:
    """The --message-id, checked as the consumer's inbox would take it; else a new one."""
    if given is None:
        return str(uuid.uuid4())
    if not (0 < len(given) <= MESSAGE_ID_MAX and given.isprintable()):
        raise ToolError(
            f"--message-id must be printable and 1 to {MESSAGE_ID_MAX} characters; nothing was sent"
        )
    return given


def not_sent(topic: str, error: KafkaError, message_id: str) -> str:
    """Why nothing can be said sent, and, when some may have been, how to send it again safely."""
    reason = f"could not produce to {topic}: {error.str()}"
    if error.code() != KafkaError._MSG_TIMED_OUT:
        return reason
    return (
        f"{reason}; some may have reached the broker all the same: send the same again with "
        f"--message-id {message_id}, and the consumer applies what did arrive once"
    )


def _line_record(settings: Settings, topic: str, number: int, line: str) -> Record:
    try:
        return record_from_cli(settings, topic, line, [])
    except ToolError as exc:
        raise ToolError(f"line {number}: {exc}; nothing was sent") from None


def consume(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    codec = bootstrap.avro_codec(settings)
    for message in read(
        settings, [args.topic], args.from_beginning, args.max, args.timeout, args.group
    ):
        print_json(describe(codec, message))
    return 0


def read(
    settings: Settings,
    topics: list[str],
    from_beginning: bool,
    max_messages: int | None,
    idle_timeout: float | None,
    group: str | None = None,
) -> Iterator[Received]:
    """Yield records from the topics until ``max_messages`` or ``idle_timeout`` s of silence.

    Silence is counted from the last record, or from the first assignment before any.
    """
    reader = TopicReader(settings, topics, from_beginning, group, client_id="allocation-cli")
    seen, last = 0, None
    try:
        while max_messages is None or seen < max_messages:
            for message in reader.poll(0.5)[
                : None if max_messages is None else max_messages - seen
            ]:
                seen, last = seen + 1, message.at
                yield message
            if last is None and reader.assigned.is_set():
                last = time.monotonic()
            silent = time.monotonic() - last if last is not None else 0.0
            if idle_timeout is not None and silent > idle_timeout:
                return
    finally:
        reader.close()


def describe(codec: AvroCodec, message: Received, decode_as: str | None = None) -> dict[str, Any]:
    """A message as a JSON-ready dict: coordinates, key, headers and the decoded value."""
    described: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "key": message.key,
        "headers": message.headers,
    }
    try:
        described["value"] = codec.decode(decode_as or message.topic, message.value)
    except (PoisonMessage, KeyError) as exc:
        described["value"] = None
        described["undecodable"] = str(exc)
        described["value_base64"] = base64.b64encode(message.value or b"").decode()
    return described


def record_from_cli(
    settings: Settings, topic: str, as_json: str | None, flags: list[str]
) -> Record:
    """The record to send, from ``--json`` and ``--<field> value`` flags (flags win)."""
    name = contract.topic_records(settings).get(topic)
    if name is None or topic not in settings.command_topics:
        raise ToolError(
            f"{topic!r} is not a command topic; use one of {', '.join(settings.command_topics)}"
        )
    fields = contract.load_schema(name)["fields"]
    parser = argparse.ArgumentParser(prog=f"allocation produce {topic}", add_help=False)
    for field in fields:
        parser.add_argument(f"--{field['name']}", type=_field_type(field), default=None)
    parsed = vars(parser.parse_args(flags))
    record: Record = _json_record(as_json) if as_json is not None else {}
    record.update({k: v for k, v in parsed.items() if v is not None})
    optional = {f["name"] for f in fields if "default" in f}
    missing = [f["name"] for f in fields if f["name"] not in record and f["name"] not in optional]
    if missing:
        raise ToolError(
            f"{topic} needs {', '.join('--' + m for m in missing)} (or the field in --json)"
        )
    unknown = set(record) - {f["name"] for f in fields}
    if unknown:
        raise ToolError(f"{name} has no field {', '.join(sorted(unknown))}")
    return record


def _json_record(text: str) -> Record:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ToolError("the record must be a JSON object")
    if isinstance(record.get("eta"), str):
        record["eta"] = _iso_date(record["eta"])
    return record


def _field_type(field: dict[str, Any]) -> Callable[[str], Any]:
    kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
    if any(isinstance(k, dict) and k.get("logicalType") == "date" for k in kinds):
        return _iso_date
    return int if "int" in kinds else str


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    p = command(
        sub,
        "produce",
        produce,
        "send one command (fields as --name value, or --json); with -, one per JSON line of stdin",
    )
    p.add_argument("topic")
    p.add_argument("--json", help="the record as a JSON object")
    p.add_argument("--key", help="message key (default: the contract's key field)")
    p.add_argument("--correlation-id")
    p.add_argument(
        "--message-id",
        help="the message_id header (default: a new UUID); with -, ID-1, ID-2, ... in line order. "
        "Send again with the same to have a command applied once",
    )
    p.add_argument("--no-check", action="store_true", help="skip the domain's field checks")

    c = command(sub, "consume", consume, "print records as JSON lines")
    c.add_argument("topic")
    c.add_argument("--from-beginning", action="store_true")
    c.add_argument("--max", type=int, help="stop after N records")
    c.add_argument("--timeout", type=float, help="stop after N seconds without a record")
    c.add_argument("--group", help="consumer group (default: a throwaway one)")
