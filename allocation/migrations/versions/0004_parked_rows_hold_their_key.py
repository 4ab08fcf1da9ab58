"""A parked outbox row holds back the later rows of its key: index the parked keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_outbox_parked ON outbox (key) "
        "WHERE published_at IS NULL AND parked_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_outbox_parked")
