"""One index for a batch's lines: uniqueness and release order together.

The unique key on allocations now lists (batch_id, qty, orderid, sku), so it
also serves "the largest line of a batch first", and the separate release index
goes: one index fewer to maintain on every allocation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_allocations_release", table_name="allocations")
    op.drop_constraint("uq_allocations_line", "allocations", type_="unique")
    op.create_unique_constraint(
        "uq_allocations_line", "allocations", ["batch_id", "qty", "orderid", "sku"]
    )


def downgrade() -> None:
    op.drop_constraint("uq_allocations_line", "allocations", type_="unique")
    op.create_unique_constraint(
        "uq_allocations_line", "allocations", ["batch_id", "orderid", "sku", "qty"]
    )
    op.create_index("ix_allocations_release", "allocations", ["batch_id", "qty", "orderid"])
