"""Batches count their quantity changes; products number the events they raise.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Expand only: both columns have defaults, so a build that does not know them keeps
writing rows. Existing products start their event sequence at 0 (the first event
after the upgrade is number 1); existing batches are at version 1.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "batches", sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1"))
    )
    op.add_column(
        "products",
        sa.Column("event_sequence", sa.Integer, nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("products", "event_sequence")
    op.drop_column("batches", "version")
