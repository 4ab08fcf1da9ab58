"""The ``allocation`` command: the service's processes and its console tools.

Every failure a user can cause or meet (bad input, a server down, a refused
schema) ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka.schema_registry.error import SchemaRegistryError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from allocation import bootstrap as wiring
from allocation.adapters import outbox
from allocation.adapters.avro import RegistryTransportError, RegistryUnavailable
from allocation.adapters.database import make_engine, migrate
from allocation.adapters.kafka import admin_client, header
from allocation.adapters.schemas import IncompatibleSchema
from allocation.adapters.wire import load_schema, topic_records
from allocation.config import ConfigurationError, Settings, load_settings
from allocation.domain.errors import DomainError
from allocation.entrypoints import status, supervisor, tools
from allocation.entrypoints.process import configure_logging, stop_on_signals
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from allocation.entrypoints.retry import Stopped

Handler = Callable[[Settings, argparse.Namespace, list[str]], int]

USER_ERRORS = (
    ConfigurationError,
    tools.ToolError,
    IncompatibleSchema,
    DomainError,
    KafkaException,
    SchemaRegistryError,
    RegistryUnavailable,
    RegistryTransportError,
    DBAPIError,
    LookupError,
    ValueError,
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "produce":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    settings: Settings | None = None
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        handler: Handler = args.handler
        return handler(settings, args, extra)
    except USER_ERRORS as exc:
        print(f"allocation {args.command}: error: {_explain(exc, settings)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


@contextmanager
def _engine(settings: Settings, pool_size: int = 1) -> Iterator[Engine]:
    engine = make_engine(settings.sqlalchemy_url, pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()


def _explain(exc: BaseException, settings: Settings | None) -> str:
    """One line: what failed, and where when a server could not be reached."""
    where = ""
    if settings is not None and isinstance(exc, RegistryTransportError | RegistryUnavailable):
        where = f"schema registry at {settings.schema_registry_url} unreachable: "
    elif settings is not None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        where = "database connection lost: "
    elif settings is not None and isinstance(exc, OperationalError):
        where = f"database at {make_url(settings.sqlalchemy_url).render_as_string()}: "
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(original).strip().splitlines()
    return where + (text[0] if text else type(exc).__name__)


# -- the service's processes -------------------------------------------------------------


def run_all(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    prepare(settings, args, _)
    return supervisor.run([["consumer"], ["relay"], ["api"]])


def prepare(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    db_upgrade(settings, args, _)
    topics_create(settings, argparse.Namespace(partitions=None), _)
    schemas_register(settings, args, _)
    return 0


def run_consumer(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    stop = stop_on_signals()
    application = wiring.bootstrap(settings)
    consumer = wiring.command_consumer(settings, application, stop)
    try:
        consumer.run()
    except Stopped:
        pass
    finally:
        application.close()
    print(
        f"consumer stopped: {consumer.applied} applied ({consumer.duplicates} of them duplicates),"
        f" {consumer.dead_lettered} dead-lettered"
    )
    return 0


def run_relay(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    stop = stop_on_signals()
    with _engine(settings, pool_size=2) as engine:
        relay = wiring.outbox_relay(settings, engine, stop)
        relay.run()
    print(f"relay stopped: {relay.published} published")
    return 0


def run_api(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    import uvicorn

    from allocation.entrypoints.api import create_app

    application = wiring.bootstrap(settings)
    try:
        uvicorn.run(
            create_app(application),
            host=args.host or settings.api_host,
            port=args.port or settings.api_port,
            log_level=settings.log_level.lower(),
        )
    finally:
        application.close()
    return 0


def db_upgrade(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    with _engine(settings, pool_size=1) as engine:
        migrate(engine)
    print("database schema is at the latest migration")
    return 0


# -- topics and schemas --------------------------------------------------------------------


def topics_create(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    for topic, result in create_contract_topics(settings, args.partitions).items():
        print(f"{topic:<22} {result}")
    return 0


def topics_list(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    metadata = admin_client(settings).list_topics(timeout=10)
    for topic in settings.all_topics:
        found = metadata.topics.get(topic)
        state = "missing" if found is None else f"{len(found.partitions)} partitions"
        print(f"{topic:<22} {state}")
    return 0


def schemas_register(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    for registered in register_contract_schemas(settings):
        print(
            f"{registered.subject:<28} id {registered.schema_id:<4} "
            f"version {registered.version:<3} {registered.compatibility}"
        )
    return 0


# -- console tools ---------------------------------------------------------------------------


def produce(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    record = _record_from_cli(settings, args.topic, args.json, extra)
    produced = tools.produce_command(
        settings,
        wiring.avro_codec(settings),
        args.topic,
        record,
        key=args.key,
        correlation_id=args.correlation_id,
        check=not args.no_check,
    )
    tools.print_json(produced.__dict__)
    return 0


def consume(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    codec = wiring.avro_codec(settings)
    for message in tools.read(
        settings, [args.topic], args.from_beginning, args.max, args.timeout, args.group
    ):
        tools.print_json(tools.describe(codec, message))
    return 0


def dlq_list(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    codec = wiring.avro_codec(settings)
    count = 0
    for letter in tools.read(settings, [settings.topic_dlq], True, args.max, args.timeout):
        described = tools.describe(codec, letter, decode_as=_source_topic(letter))
        tools.print_json(described)
        count += 1
    print(f"{count} dead letter(s) in {settings.topic_dlq}", file=sys.stderr)
    return 0


def dlq_replay(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    wanted = {_coordinates(text) for text in args.at or []}

    def chosen(letter: Message) -> bool:
        if args.all:
            return True
        if args.error_type:
            return header(letter, "error_type") == str(args.error_type)
        return (letter.partition(), letter.offset()) in wanted

    replayed = tools.replay_dead_letters(settings, chosen, args.timeout)
    for row in replayed:
        tools.print_json(row)
    print(f"replayed {len(replayed)} dead letter(s)", file=sys.stderr)
    return 0


def outbox_parked(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    with _engine(settings, pool_size=1) as engine, engine.connect() as connection:
        rows = outbox.parked(connection, args.max)
    for row in rows:
        tools.print_json(row)
    print(f"{len(rows)} parked outbox row(s) shown", file=sys.stderr)
    return 0


def outbox_retry(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    with _engine(settings, pool_size=1) as engine, engine.begin() as connection:
        count = outbox.unpark(connection, None if args.all else args.id)
    print(f"{count} parked outbox row(s) handed back to the relay")
    return 0


def show_status(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    with _engine(settings, pool_size=1) as engine:
        print(status.render(settings, engine))
    return 0


def _source_topic(letter: Message) -> str | None:
    return header(letter, "source_topic")


def _coordinates(text: str) -> tuple[int, int]:
    partition, _, offset = text.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        raise ValueError(f"--at takes PARTITION:OFFSET of the DLQ, got {text!r}")
    return int(partition), int(offset)


def _record_from_cli(
    settings: Settings, topic: str, as_json: str | None, flags: list[str]
) -> dict[str, Any]:
    name = topic_records(settings).get(topic)
    if name is None or topic not in settings.command_topics:
        raise tools.ToolError(
            f"{topic!r} is not a command topic; use one of {', '.join(settings.command_topics)}"
        )
    fields = load_schema(name)["fields"]
    parser = argparse.ArgumentParser(prog=f"allocation produce {topic}", add_help=False)
    for field in fields:
        parser.add_argument(f"--{field['name']}", type=_field_type(field), default=None)
    parsed = vars(parser.parse_args(flags))
    record: dict[str, Any] = {}
    if as_json is not None:
        try:
            record = json.loads(as_json)
        except json.JSONDecodeError as exc:
            raise tools.ToolError(f"--json is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise tools.ToolError("--json must be a JSON object")
        if isinstance(record.get("eta"), str):
            record["eta"] = _iso_date(record["eta"])
    record.update({k: v for k, v in parsed.items() if v is not None})
    optional = {f["name"] for f in fields if "default" in f}
    missing = [f["name"] for f in fields if f["name"] not in record and f["name"] not in optional]
    if missing:
        raise tools.ToolError(
            f"{topic} needs {', '.join('--' + m for m in missing)} (or the field in --json)"
        )
    unknown = set(record) - {f["name"] for f in fields}
    if unknown:
        raise tools.ToolError(f"{name} has no field {', '.join(sorted(unknown))}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allocation", description="Allocate order lines to batches of stock over Kafka."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        p.set_defaults(handler=handler)
        return p

    command("run", run_all, "migrate, create topics, register schemas, run consumer+relay+API")
    command("prepare", prepare, "migrate the database, create topics, register schemas")
    command("consumer", run_consumer, "apply commands from the command topics")
    command("relay", run_relay, "publish the outbox to the event topics")
    api = command("api", run_api, "serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    command("status", show_status, "consumer lag, outbox backlog, dead letters, relay leader")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply the migrations").set_defaults(handler=db_upgrade)

    topics = sub.add_parser("topics", help="the contract's topics")
    topic_actions = topics.add_subparsers(dest="action", required=True)
    create = topic_actions.add_parser("create", help="create missing topics (idempotent)")
    create.add_argument("--partitions", type=int, default=None)
    create.set_defaults(handler=topics_create)
    topic_actions.add_parser("list", help="show the topics").set_defaults(handler=topics_list)

    schemas = sub.add_parser("schemas", help="the contract's Avro schemas")
    schema_actions = schemas.add_subparsers(dest="action", required=True)
    schema_actions.add_parser(
        "register", help="register every schema (BACKWARD compatibility)"
    ).set_defaults(handler=schemas_register)

    p = command("produce", produce, "send one command; fields as --name value or --json")
    p.add_argument("topic")
    p.add_argument("--json", help="the record as a JSON object")
    p.add_argument("--key", help="message key (default: the contract's key field)")
    p.add_argument("--correlation-id")
    p.add_argument("--no-check", action="store_true", help="skip the domain's field checks")

    c = command("consume", consume, "print records as JSON lines")
    c.add_argument("topic")
    c.add_argument("--from-beginning", action="store_true")
    c.add_argument("--max", type=int, help="stop after N records")
    c.add_argument("--timeout", type=float, help="stop after N seconds without a record")
    c.add_argument("--group", help="consumer group (default: a throwaway one)")

    box = sub.add_parser("outbox", help="outbox rows the relay gave up on")
    box_actions = box.add_subparsers(dest="action", required=True)
    listed = box_actions.add_parser("parked", help="print parked rows with their last error")
    listed.add_argument("--max", type=int, default=100)
    listed.set_defaults(handler=outbox_parked)
    again = box_actions.add_parser("retry", help="hand parked rows back to the relay")
    rows = again.add_mutually_exclusive_group(required=True)
    rows.add_argument("--all", action="store_true")
    rows.add_argument("--id", type=int, nargs="+")
    again.set_defaults(handler=outbox_retry)

    dlq = sub.add_parser("dlq", help="the dead-letter queue")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    listing = dlq_actions.add_parser("list", help="print dead letters with their reasons")
    listing.add_argument("--max", type=int)
    listing.add_argument("--timeout", type=float, default=3.0)
    listing.set_defaults(handler=dlq_list)
    replay = dlq_actions.add_parser("replay", help="send dead letters back to their topics")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("--at", nargs="+", metavar="PARTITION:OFFSET")
    which.add_argument("--error-type")
    replay.add_argument("--timeout", type=float, default=3.0)
    replay.set_defaults(handler=dlq_replay)
    return parser


if __name__ == "__main__":
    sys.exit(main())
