"""``allocation status | outbox parked | outbox retry``: what runs, and rows given up on."""

from __future__ import annotations

import argparse
import sys

from allocation.adapters import outbox_operations
from allocation.config import Settings
from allocation.entrypoints import status
from allocation.entrypoints.cli.common import command, engine, print_json


def show_status(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    with engine(settings) as pool:
        print(status.render(settings, pool))
    return 0


def outbox_parked(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    with engine(settings) as pool, pool.connect() as connection:
        rows = outbox_operations.parked(connection, args.max)
    for row in rows:
        print_json(row)
    print(f"{len(rows)} parked outbox row(s) shown", file=sys.stderr)
    return 0


def outbox_retry(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    with engine(settings) as pool, pool.begin() as connection:
        count = outbox_operations.unpark(connection, None if args.all else args.id)
    print(f"{count} parked outbox row(s) handed back to the relay")
    return 0


def outbox_skip(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    with engine(settings) as pool, pool.begin() as connection:
        count = outbox_operations.skip(connection, args.id)
    print(f"{count} parked outbox row(s) skipped: they will not be sent; their keys move on")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    command(sub, "status", show_status, "consumer lag, outbox backlog, dead letters, relay leader")
    box = sub.add_parser("outbox", help="outbox rows the relay gave up on")
    actions = box.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("parked", help="print parked rows with their last error")
    listed.add_argument("--max", type=int, default=100)
    listed.set_defaults(handler=outbox_parked)
    again = actions.add_parser("retry", help="hand parked rows back to the relay")
    rows = again.add_mutually_exclusive_group(required=True)
    rows.add_argument("--all", action="store_true")
    rows.add_argument("--id", type=int, nargs="+")
    again.set_defaults(handler=outbox_retry)
    skipping = actions.add_parser("skip", help="never send these parked rows; free their keys")
    skipping.add_argument("--id", type=int, nargs="+", required=True)
    skipping.set_defaults(handler=outbox_skip)
