"""Every SQL table of the service, in one place.

The schema is created by the Alembic migrations in ``allocation/migrations``;
these definitions must match them (a test compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("sku", String(255), primary_key=True),
    Column("version_number", Integer, nullable=False, server_default=text("0")),
    # The number of the last event raised about the sku (events' product_version).
    Column("event_sequence", Integer, nullable=False, server_default=text("0")),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", String(255), nullable=False, unique=True),
    Column("sku", ForeignKey("products.sku"), nullable=False, index=True),
    Column("purchased_quantity", Integer, nullable=False),
    # The sum of the batch's allocations, kept so that allocating never reads them all.
    Column("allocated_quantity", Integer, nullable=False, server_default=text("0")),
    Column("eta", Date, nullable=True),
    # Counts changes of the purchased quantity; a ChangeBatchQuantity may expect it.
    Column("version", Integer, nullable=False, server_default=text("1")),
)

# No surrogate id and no foreign key (migration 0014: each cost every allocated line an index
# entry or a per-row check). batch_id names a batch the unit of work loaded or inserted under
# its product's lock, and batches are never deleted: a trigger on batches refuses it.
allocations = Table(
    "allocations",
    metadata,
    Column("batch_id", Integer, nullable=False),
    Column("orderid", String(255), nullable=False),
    Column("sku", String(255), nullable=False),
    Column("qty", Integer, nullable=False),
    # The row's key: a line is held once per batch. The same index, in this column order,
    # answers "which line does this batch release first?" (largest qty, then order id).
    UniqueConstraint("batch_id", "qty", "orderid", "sku", name="uq_allocations_line"),
    # "Is this line held anywhere?"
    Index("ix_allocations_sku_orderid", "sku", "orderid"),
)

allocations_view = Table(
    "allocations_view",
    metadata,
    Column("orderid", String(255), primary_key=True),
    Column("sku", String(255), primary_key=True),
    Column("batchref", String(255), primary_key=True),
)

inbox = Table(
    "inbox",
    metadata,
    Column("message_id", String(512), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_inbox_processed_at", "processed_at"),
)

# Where each consumer group reads next, per partition: written in the transaction that
# applied the messages before it, so the offsets are restored with the data they describe.
consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer_group", String(255), primary_key=True),
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Orders read from a topic before their sku had a batch, in arrival order (id): applied in
# the transaction of the sku's first CreateBatch, or rejected once ``expires_at`` passes.
waiting_commands = Table(
    "waiting_commands",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("sku", String(255), nullable=False),
    Column("orderid", String(255), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("message_id", String(512), nullable=False),
    Column("correlation_id", String(512), nullable=True),
    Column("traceparent", String(55), nullable=True),
    Column("source_topic", String(249), nullable=True),
    Column("source_partition", Integer, nullable=True),
    Column("source_offset", BigInteger, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_waiting_commands_sku", "sku", "id"),
    Index("ix_waiting_commands_expires_at", "expires_at"),
)

# Responses to HTTP requests that carried an Idempotency-Key, keyed like their inbox row
# ("http:<key>") and written in the same transaction as the command.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("message_id", String(512), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("event_type", String(100), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("key", String(255), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("causation_id", String(512), nullable=True),
    Column("correlation_id", String(512), nullable=True),
    # W3C trace context of the transaction that wrote the row: the relay sends under it.
    Column("traceparent", String(55), nullable=True),
    # The registry's version (of the topic's subject) the payload was written for; NULL:
    # written by a build that did not say, sent with the relay's own schema.
    Column("schema_version", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    # Set when the relay gave up on a row (it could never be sent); an operator decides.
    Column("parked_at", DateTime(timezone=True), nullable=True),
    # The relay's only read: pending rows in commit order.
    Index(
        "ix_outbox_pending",
        "id",
        postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
    ),
    # Keys held back because one of their rows waits to be retried.
    Index(
        "ix_outbox_retrying",
        "key",
        postgresql_where=text(
            "published_at IS NULL AND parked_at IS NULL AND next_attempt_at IS NOT NULL"
        ),
    ),
    # Keys held by a parked row (few: an operator's to-do list).
    Index(
        "ix_outbox_parked",
        "key",
        postgresql_where=text("published_at IS NULL AND parked_at IS NOT NULL"),
    ),
    # Pruning by age.
    Index(
        "ix_outbox_published_at",
        "published_at",
        postgresql_where=text("published_at IS NOT NULL"),
    ),
)

OUTBOX_CHANNEL = "allocation_outbox"
"""LISTEN/NOTIFY channel a trigger on ``outbox`` signals after every insert."""

LEADER_LOCK = (0x616C6C6F, 0x72656C61)
"""The relay leader's session-level advisory lock, two ints: "allo", "rela"."""

RETENTION_LOCK = (0x616C6C6F, 0x70727565)
"""Held by the transaction of each chunk of pruning, two ints: "allo", "prue"."""

MIGRATION_LOCK = (0x616C6C6F, 0x6D696772)
"""Held while migrating (``allocation db upgrade``), two ints: "allo", "migr"."""
