"""What the subcommand modules share: the handler type, user errors, output, the engine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, TextIO

from sqlalchemy import Engine

from allocation import bootstrap
from allocation.config import Settings

Handler = Callable[[Settings, argparse.Namespace, list[str]], int]
"""A subcommand: settings, its parsed arguments, the arguments left over; the exit code."""


class ToolError(Exception):
    """A user-facing failure of a console tool; its text is the whole message."""


def command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` run by ``handler``."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


@contextmanager
def engine(settings: Settings, pool_size: int = 1, pre_ping: bool = True) -> Iterator[Engine]:
    """A small engine for one command, disposed of at the end."""
    built = bootstrap.database(settings, pool_size=pool_size, pre_ping=pre_ping)
    try:
        yield built
    finally:
        built.dispose()


def print_json(row: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """One JSON object per line, dates as ISO text."""
    out.write(json.dumps(row, default=_jsonable) + "\n")
    out.flush()


def _jsonable(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
