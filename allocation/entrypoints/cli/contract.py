"""``allocation topics ... | schemas ...``: the contract's topics and schemas on the servers."""

from __future__ import annotations

import argparse
import sys

from confluent_kafka import KafkaException

from allocation.adapters.kafka import admin_client
from allocation.config import Settings
from allocation.entrypoints.provision import (
    check_contract_schemas,
    create_contract_topics,
    min_insync_replicas,
    register_contract_schemas,
)


def topics_create(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    for topic, result in create_contract_topics(settings, args.partitions).items():
        print(f"{topic:<22} {result}")
    print(
        f"replication factor {settings.topic_replication_factor}, "
        f"min.insync.replicas {min_insync_replicas(settings)} (for topics created now)"
    )
    return 0


def topics_list(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException:
        admin.poll(0)  # a failed login reaches error_cb only: let it raise AccessDenied
        raise
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


def schemas_check(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    checked = check_contract_schemas(settings)
    for result in checked:
        print(f"{result.subject:<28} {result.verdict:<13} {result.reason}".rstrip())
    refused = [c for c in checked if not c.ok]
    if refused:
        print(f"{len(refused)} schema(s) would break their readers; do not deploy", file=sys.stderr)
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    topics = sub.add_parser("topics", help="the contract's topics")
    topic_actions = topics.add_subparsers(dest="action", required=True)
    create = topic_actions.add_parser("create", help="create missing topics (idempotent)")
    create.add_argument("--partitions", type=int, default=None)
    create.set_defaults(handler=topics_create)
    topic_actions.add_parser("list", help="show the topics").set_defaults(handler=topics_list)

    schemas = sub.add_parser("schemas", help="the contract's Avro schemas")
    schema_actions = schemas.add_subparsers(dest="action", required=True)
    schema_actions.add_parser(
        "register", help="register every schema at its topic's compatibility level"
    ).set_defaults(handler=schemas_register)
    schema_actions.add_parser(
        "check", help="would registering break any reader? (registers nothing; the deploy gate)"
    ).set_defaults(handler=schemas_check)
