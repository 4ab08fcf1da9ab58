"""Orders that arrived before their sku's first batch wait in a table of their own.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28

Expand only: a new table. A build that does not know it rejects such an order at
once, as before; a build that does parks it here and applies it in the
transaction of the sku's first CreateBatch, or rejects it when it expires.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "waiting_commands",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("orderid", sa.String(255), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(512), nullable=False),
        sa.Column("correlation_id", sa.String(512), nullable=True),
        sa.Column("traceparent", sa.String(55), nullable=True),
        sa.Column("source_topic", sa.String(249), nullable=True),
        sa.Column("source_partition", sa.Integer, nullable=True),
        sa.Column("source_offset", sa.BigInteger, nullable=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_waiting_commands_sku", "waiting_commands", ["sku", "id"])
    op.create_index("ix_waiting_commands_expires_at", "waiting_commands", ["expires_at"])


def downgrade() -> None:
    op.drop_table("waiting_commands")
