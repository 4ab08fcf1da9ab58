"""Retention in the relay's process keeps its own schedule, whatever the relay is doing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, insert

from allocation.adapters.tables import outbox
from allocation.config import Settings
from testkit.backlog import expired_left, insert_expired
from testkit.processes import Service, free_port, service_env, wait_until


def test_retention_prunes_while_the_relay_cannot_publish(
    e2e_settings: Settings, engine: Engine, log_dir: Path
) -> None:
    # A broker nobody answers on and a pending row: the relay retries its first chunk for
    # ever. Retention used to run only between chunks that were not full, so never here.
    tag = uuid.uuid4().hex[:8]
    with engine.begin() as connection:
        insert_expired(connection, tag, 12_000)
        connection.execute(
            insert(outbox).values(
                event_id=uuid.uuid4(),
                event_type="OutOfStock",
                topic=e2e_settings.topic_out_of_stock,
                key=f"stuck-{tag}",
                payload={"sku": f"stuck-{tag}"},
                occurred_at=datetime.now(UTC),
            )
        )
    env = service_env(e2e_settings, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    relay = Service(["relay"], env, log_dir, "relay").start()
    try:

        def pruned() -> bool:
            with engine.connect() as connection:
                return expired_left(connection, tag) == (0, 0, 0)

        wait_until(pruned, timeout=60, what="the expired rows pruned")
        assert relay.running
    finally:
        assert relay.terminate() == 0
