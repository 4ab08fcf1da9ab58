"""The ``allocation`` command: the service's processes and its console tools.

One module per group of subcommands, each adding its own to the parser:
``processes`` (run, consumer, relay, api, db), ``contract`` (topics, schemas),
``console`` (produce, consume), ``dlq``, ``offsets``, ``operations`` (status, outbox).
Every failure a user can cause or meet (bad input, a server down, a refused
schema) ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from confluent_kafka import KafkaException
from confluent_kafka.schema_registry.error import SchemaRegistryError
from psycopg2.errors import InsufficientPrivilege
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from allocation.adapters import logs
from allocation.adapters.avro import RegistryTransportError
from allocation.adapters.faults import RegistryUnavailable
from allocation.adapters.privileges import PRIVILEGE_ADVICE, UnknownRole
from allocation.adapters.schema_migrations import SchemaTooOld
from allocation.adapters.schemas import IncompatibleSchema
from allocation.adapters.security import AccessDenied, is_refusal, refused
from allocation.config import ConfigurationError, Settings, load_settings
from allocation.domain.errors import DomainError
from allocation.entrypoints.cli import console, contract, dlq, offsets, operations, processes
from allocation.entrypoints.cli.common import Handler, ToolError

USER_ERRORS = (
    ConfigurationError,
    AccessDenied,
    UnknownRole,
    ToolError,
    IncompatibleSchema,
    DomainError,
    KafkaException,
    SchemaRegistryError,
    RegistryUnavailable,
    RegistryTransportError,
    SchemaTooOld,
    DBAPIError,
    LookupError,
    ValueError,
)


def main(argv: list[str] | None = None) -> int:
    """Run one ``allocation`` subcommand; the exit code says how it went."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "produce":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    settings: Settings | None = None
    try:
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_format)
        handler: Handler = args.handler
        return handler(settings, args, extra)
    except USER_ERRORS as exc:
        print(f"allocation {args.command}: error: {explain(exc, settings)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def explain(exc: BaseException, settings: Settings | None) -> str:
    """One line: what failed, and where when a server could not be reached."""
    where = ""
    if isinstance(exc, KafkaException) and exc.args and is_refusal(exc.args[0]):
        exc = refused(exc.args[0])
    if settings and settings.kafka_sasl_username and str(exc).startswith("Kafka refused"):
        where = f"as principal User:{settings.kafka_sasl_username}: "
    elif settings is not None and isinstance(exc, RegistryTransportError | RegistryUnavailable):
        where = f"schema registry at {settings.schema_registry_url} unreachable: "
    elif settings is not None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        where = "database connection lost: "
    elif settings is not None and isinstance(exc, OperationalError):
        where = f"database at {make_url(settings.sqlalchemy_url).render_as_string()}: "
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(original).strip().splitlines()
    said = where + (text[0] if text else type(exc).__name__)
    if isinstance(original, InsufficientPrivilege):  # SQLSTATE 42501
        said = f"{said}; {PRIVILEGE_ADVICE}"
    return said


def _version() -> str:
    try:
        return metadata.version("allocation")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="allocation", description="Allocate order lines to batches of stock over Kafka."
    )
    parser.add_argument("--version", action="version", version=f"allocation {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (processes, contract, console, dlq, offsets, operations):
        group.add_commands(sub)
    return parser
