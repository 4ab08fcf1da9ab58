"""``allocation run | prepare | consumer | relay | api | db upgrade``: the service's processes."""

from __future__ import annotations

import argparse
import threading

from sqlalchemy import Engine

from allocation import bootstrap
from allocation.adapters import tracing
from allocation.adapters.faults import is_transient
from allocation.adapters.schema_migrations import require_schema
from allocation.config import Settings
from allocation.entrypoints import consumer, health, relay, retention, supervisor
from allocation.entrypoints.cli.common import command, engine
from allocation.entrypoints.cli.contract import schemas_register, topics_create
from allocation.entrypoints.process import settle_heap, stop_on_signals
from allocation.entrypoints.retry import Backoff, Stopped


def run_all(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    # Migrating and registering are deploy steps (`allocation prepare`), not a side effect
    # of every start: a replica of a new build must not change what old replicas run on.
    if args.prepare:
        prepare(settings, args, extra)
    for name, host, port in (
        ("consumer", settings.metrics_host, settings.consumer_metrics_port),
        ("relay", settings.metrics_host, settings.relay_metrics_port),
        ("API", settings.api_host, settings.api_port),
    ):
        where = f"at http://{host}:{port}" if port else "off (port 0)"
        print(f"{name:<9} /metrics /livez /readyz {where}")
    return supervisor.run(
        [supervisor.allocation_command(role) for role in ("consumer", "relay", "api")]
    )


def prepare(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    db_upgrade(settings, args, extra)
    topics_create(settings, argparse.Namespace(partitions=None), extra)
    schemas_register(settings, args, extra)
    return 0


def _trace(settings: Settings, role: str) -> None:
    tracing.configure(
        f"allocation-{role}", settings.otel_traces_exporter, settings.otel_exporter_otlp_endpoint
    )


def run_consumer(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    _trace(settings, "consumer")
    stop = stop_on_signals()
    # Without a ping per transaction: a poll that fails on a dropped connection is retried.
    application = bootstrap.bootstrap(settings, pre_ping=False)
    try:
        if application.engine is not None:
            _check_schema(application.engine, stop)
        process = consumer.build(settings, application, stop)
        health.serve(process.health, settings.metrics_host, settings.consumer_metrics_port)
        settle_heap()
        process.run()
    except Stopped:
        pass
    finally:
        application.close()
    print(
        f"consumer stopped: {process.applied} applied ({process.duplicates} of them duplicates,"
        f" {process.rejected} rejected), {process.dead_lettered} dead-lettered"
    )
    return 0


def run_relay(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    _trace(settings, "relay")
    stop = stop_on_signals()
    # Three connections: the relay's reads and its marks, and retention's, which runs on a
    # thread of its own so that neither a busy relay nor a broker outage holds it up. Without a
    # ping per transaction: a chunk that fails on a dropped connection is retried.
    with engine(settings, pool_size=3, pre_ping=False) as pool:
        _check_schema(pool, stop)
        process = relay.build(settings, pool, stop)
        health.serve(process.health, settings.metrics_host, settings.relay_metrics_port)
        pruning = retention.start(settings, pool, stop)
        process.run()
        pruning.join(timeout=10)
    print(f"relay stopped: {process.published} published")
    return 0


def _check_schema(pool: Engine, stop: threading.Event) -> None:
    """Refuse to start on a schema older than the code needs; wait out a database restarting."""
    try:
        Backoff(stop).call("schema check", lambda: require_schema(pool), is_transient)
    except Stopped:
        raise SystemExit(0) from None


def run_api(settings: Settings, args: argparse.Namespace, _: list[str]) -> int:
    import uvicorn

    from allocation.entrypoints.api import create_app

    _trace(settings, "api")
    application = bootstrap.bootstrap(settings)
    try:
        uvicorn.run(
            create_app(application),
            host=args.host or settings.api_host,
            port=args.port or settings.api_port,
            log_level=settings.log_level.lower(),
            access_log=settings.api_access_log,
        )
    finally:
        application.close()
    return 0


def db_upgrade(settings: Settings, _args: argparse.Namespace, _: list[str]) -> int:
    bootstrap.upgrade_schema(settings)
    print("database schema is at the latest migration")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the parser."""
    run = command(sub, "run", run_all, "run consumer+relay+API (--prepare: `prepare` first)")
    run.add_argument(
        "--prepare", action="store_true", help="migrate, create topics, register schemas first"
    )
    command(sub, "prepare", prepare, "migrate the database, create topics, register schemas")
    command(sub, "consumer", run_consumer, "apply commands from the command topics")
    command(sub, "relay", run_relay, "publish the outbox to the event topics")
    api = command(sub, "api", run_api, "serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser(
        "upgrade", help="apply the migrations (under an advisory lock: one replica at a time)"
    ).set_defaults(handler=db_upgrade)
