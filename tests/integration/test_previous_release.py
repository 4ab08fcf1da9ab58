"""The previous release's code keeps working on this release's migration head (expand only).

During a rolling upgrade the database is migrated first, while replicas of the
previous release still run. That release's code is taken from git
(``PREVIOUS_RELEASE``), run in a process of its own against the migrated
database, and what it writes is then read by this release: its outbox rows go
out with this build's schema, the fields they lack taking their defaults.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import fastavro
import pytest
from sqlalchemy import Engine

from allocation.adapters.contract import load_schema
from allocation.adapters.outbox_publishing import fetch_pending
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.adapters.wire import published_record
from allocation.config import Settings
from allocation.domain import commands
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from testkit.processes import service_env
from testkit.upgrades import release_package
from tests.conftest import random_batchref, random_orderid, random_sku

# The last commit before issue 15's migrations (head 0005): move it on at each release.
PREVIOUS_RELEASE = "d16582f"

OLD_BUILD_WRITES = """
import sys
import allocation
from allocation.bootstrap import bootstrap
from allocation.config import load_settings
from allocation.domain import commands
ref, sku, orderid = sys.argv[1:4]
app = bootstrap(load_settings())
app.bus.handle(commands.CreateBatch(ref, sku, 10, None))
app.bus.handle(commands.Allocate(orderid, sku, 4))
app.bus.handle(commands.Allocate(orderid + "-big", sku, 50))
app.close()
print(allocation.__file__)
"""


@pytest.fixture
def previous_release(tmp_path: Path) -> Path:
    """The previous release's package, extracted from git."""
    try:
        return release_package(PREVIOUS_RELEASE, tmp_path)
    except LookupError as missing:
        pytest.skip(str(missing))


def test_the_previous_release_writes_on_the_new_head_and_this_one_reads_it(
    previous_release: Path,
    settings: Settings,
    engine: Engine,
    uow_factory: Callable[[], SqlAlchemyUnitOfWork],
) -> None:
    ref, sku, orderid = random_batchref(), random_sku(), random_orderid()
    env = {**service_env(settings), "PYTHONPATH": str(previous_release)}
    old = subprocess.run(
        [sys.executable, "-c", OLD_BUILD_WRITES, ref, sku, orderid],
        env=env,
        cwd=previous_release,  # `python -c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert old.returncode == 0, old.stderr[-2000:]
    assert old.stdout.strip().startswith(str(previous_release))  # the old code ran, not ours

    # This release goes on from what the old one wrote: the sequence starts at 1.
    bus = MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS)
    bus.handle(commands.Allocate(random_orderid(), sku, 1))
    with engine.connect() as connection:
        rows = [row for row in fetch_pending(connection, 10_000) if row.key == sku]
    assert [(r.event_type, r.schema_version) for r in rows] == [
        ("Allocated", None),
        ("OutOfStock", None),
        ("Allocated", None),
    ]
    assert [r.payload.get("product_version") for r in rows] == [None, None, 1]
    schemas = {
        name: fastavro.parse_schema(load_schema(name)) for name in ("Allocated", "OutOfStock")
    }
    for row in rows:
        record = published_record(row.payload, str(row.event_id), row.occurred_at, None)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schemas[row.event_type], record)
        out.seek(0)
        decoded = fastavro.schemaless_reader(out, schemas[row.event_type])
        assert decoded["sku"] == sku
        assert json.dumps(decoded, default=str)
