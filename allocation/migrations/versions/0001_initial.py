"""Initial schema: products, batches, allocations, read model, inbox and outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.String(255), primary_key=True),
        sa.Column("version_number", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("reference", sa.String(255), nullable=False, unique=True),
        sa.Column("sku", sa.String(255), sa.ForeignKey("products.sku"), nullable=False),
        sa.Column("purchased_quantity", sa.Integer, nullable=False),
        sa.Column("allocated_quantity", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("eta", sa.Date, nullable=True),
    )
    op.create_index("ix_batches_sku", "batches", ["sku"])
    op.create_table(
        "allocations",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("orderid", sa.String(255), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.UniqueConstraint("batch_id", "orderid", "sku", "qty", name="uq_allocations_line"),
    )
    op.create_index("ix_allocations_sku_orderid", "allocations", ["sku", "orderid"])
    op.create_index("ix_allocations_release", "allocations", ["batch_id", "qty", "orderid"])
    op.create_table(
        "allocations_view",
        sa.Column("orderid", sa.String(255), primary_key=True),
        sa.Column("sku", sa.String(255), primary_key=True),
        sa.Column("batchref", sa.String(255), primary_key=True),
    )
    op.create_table(
        "inbox",
        sa.Column("message_id", sa.String(512), primary_key=True),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("causation_id", sa.String(512), nullable=True),
        sa.Column("correlation_id", sa.String(512), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_retrying",
        "outbox",
        ["key"],
        postgresql_where=sa.text(
            "published_at IS NULL AND parked_at IS NULL AND next_attempt_at IS NOT NULL"
        ),
    )
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    # Wakes the relay when an outbox insert commits (NOTIFY is delivered at commit).
    op.execute(
        """
        CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('allocation_outbox', '');
            RETURN NULL;
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS notify_outbox()")
    for table in ("outbox", "inbox", "allocations_view", "allocations", "batches", "products"):
        op.drop_table(table)
