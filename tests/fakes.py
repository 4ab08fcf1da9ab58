"""In-memory fakes of the ports, shared by every test that needs no server."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from confluent_kafka.schema_registry import RegisteredSchema
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry.common.schema_registry_client import SchemaVersion
from confluent_kafka.schema_registry.error import SchemaRegistryError

from allocation.bootstrap import event_routes
from allocation.config import settings_from
from allocation.domain import model
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractInbox,
    AbstractOffsets,
    AbstractOutbox,
    AbstractRepository,
    AbstractResponses,
    AbstractWaiting,
    AllocationView,
    ConsumedOffset,
    OutboxEntry,
    StoredResponse,
    WaitingCommand,
)
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


class FakeRepository(AbstractRepository):
    def __init__(self, products: list[model.Product] | None = None) -> None:
        super().__init__()
        self._products = set(products or [])

    def _add(self, product: model.Product) -> None:
        self._products.add(product)

    def _get(self, sku: str) -> model.Product | None:
        return next((p for p in self._products if p.sku == sku), None)

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        return next(
            (p for p in self._products for b in p.batches if b.reference == ref),
            None,
        )


class FakeInbox(AbstractInbox):
    def __init__(self) -> None:
        self.committed: set[str] = set()
        self.staged: set[str] = set()

    def record(self, message_id: str, aliases: Iterable[str] = ()) -> bool:
        known = self.committed | self.staged
        if message_id in known or not known.isdisjoint(aliases):
            return False
        self.staged.add(message_id)
        return True


class FakeOutbox(AbstractOutbox):
    def __init__(self) -> None:
        self.committed: list[OutboxEntry] = []
        self.staged: list[OutboxEntry] = []

    def add(self, entries: list[OutboxEntry]) -> None:
        self.staged.extend(entries)


class FakeResponses(AbstractResponses):
    def __init__(self) -> None:
        self.committed: dict[str, StoredResponse] = {}
        self.staged: dict[str, StoredResponse] = {}

    def save(self, message_id: str, response: StoredResponse) -> None:
        self.staged[message_id] = response

    def get(self, message_id: str) -> StoredResponse | None:
        return self.staged.get(message_id) or self.committed.get(message_id)


class FakeAllocationsView(AbstractAllocationsView):
    def __init__(self) -> None:
        self.rows: set[AllocationView] = set()

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self.rows.add(AllocationView(orderid, sku, batchref))

    def remove(self, orderid: str, sku: str, batchref: str) -> None:
        self.rows.discard(AllocationView(orderid, sku, batchref))

    def for_order(self, orderid: str) -> list[AllocationView]:
        return sorted(
            (row for row in self.rows if row.orderid == orderid),
            key=lambda row: (row.sku, row.batchref),
        )


class FakeOffsets(AbstractOffsets):
    def __init__(self) -> None:
        self.committed: dict[tuple[str, str, int], int] = {}
        self.staged: dict[tuple[str, str, int], int] = {}

    def save(self, offsets: Sequence[ConsumedOffset]) -> None:
        self.staged.update({(o.group, o.topic, o.partition): o.next_offset for o in offsets})


class FakeWaiting(AbstractWaiting):
    """Transactional like the database: what a unit of work changes counts only once committed.

    ``now`` is the clock deciding expiry; tests move it.
    """

    def __init__(self, products: FakeRepository) -> None:
        self._products = products
        self.committed: list[tuple[WaitingCommand, datetime]] = []
        self._current: list[tuple[WaitingCommand, datetime]] | None = None
        self.now = datetime.now(UTC)

    @property
    def rows(self) -> list[tuple[WaitingCommand, datetime]]:
        if self._current is None:
            self._current = list(self.committed)
        return self._current

    def holds(self, sku: str) -> bool:
        return any(w.command.sku == sku for w, _ in self.rows)

    def add(self, waiting: WaitingCommand, wait: timedelta) -> None:
        self.rows.append((waiting, self.now + wait))

    def take(self, sku: str) -> list[WaitingCommand]:
        return self._take(lambda w, _: w.command.sku == sku, len(self.rows))

    def take_expired(self, limit: int) -> list[WaitingCommand]:
        return self._take(lambda _, expires: expires < self.now, limit)

    def stranded(self, limit: int) -> list[str]:
        skus = dict.fromkeys(w.command.sku for w, _ in self.rows)
        return [sku for sku in skus if self._products._get(sku) is not None][:limit]

    def _take(
        self, which: Callable[[WaitingCommand, datetime], bool], limit: int
    ) -> list[WaitingCommand]:
        taken = [row for row in self.rows if which(*row)][:limit]
        self._current = [row for row in self.rows if row not in taken]
        return [w for w, _ in taken]

    def commit(self) -> None:
        self.committed = list(self.rows)
        self._current = None

    def rollback(self) -> None:
        self._current = None


class FakeUnitOfWork(AbstractUnitOfWork):
    """Products live across units (as the book's fake); inbox and outbox keep only commits."""

    def __init__(self) -> None:
        super().__init__(event_routes(settings_from()))
        self.products = FakeRepository()
        self.inbox = FakeInbox()
        self.outbox = FakeOutbox()
        self.views = FakeAllocationsView()
        self.responses = FakeResponses()
        self.offsets = FakeOffsets()
        self.waiting = FakeWaiting(self.products)
        self.commits = 0

    def _flush(self) -> None:
        pass

    def _commit(self) -> None:
        self.commits += 1
        self.inbox.committed |= self.inbox.staged
        self.outbox.committed.extend(self.outbox.staged)
        self.responses.committed.update(self.responses.staged)
        self.offsets.committed.update(self.offsets.staged)
        self.waiting.commit()
        self.rollback()

    def rollback(self) -> None:
        self.inbox.staged.clear()
        self.outbox.staged.clear()
        self.responses.staged.clear()
        self.offsets.staged.clear()
        self.waiting.rollback()
        self.products.seen.clear()
        self.products.take_handed()


class FakeSchemaRegistry:
    """The few calls of a Confluent-style registry the Avro codec makes, counted per method."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.calls: Counter[str] = Counter()

    def register(self, subject: str, schema: Mapping[str, object]) -> int:
        text = json.dumps(schema)
        schema_id = next((i for i, s in self.schemas.items() if s == text), len(self.schemas) + 1)
        self.schemas[schema_id] = text
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def get_schema(self, schema_id: int) -> RegistrySchema:
        self.calls["get_schema"] += 1
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, f"schema {schema_id} not found")
        return RegistrySchema(self.schemas[schema_id], "AVRO")

    def get_schema_versions(self, schema_id: int) -> list[SchemaVersion]:
        self.calls["get_schema_versions"] += 1
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, f"schema {schema_id} not found")
        return [
            SchemaVersion(subject, n + 1)
            for subject, ids in self.subjects.items()
            for n, i in enumerate(ids)
            if i == schema_id
        ]

    def lookup_schema(self, subject: str, schema: RegistrySchema) -> RegisteredSchema:
        self.calls["lookup_schema"] += 1
        for n, i in enumerate(self.subjects.get(subject, [])):
            if json.loads(self.schemas[i]) == json.loads(schema.schema_str or "null"):
                return RegisteredSchema(subject, n + 1, i, None, schema)
        raise SchemaRegistryError(404, 40403, f"not under {subject}")
