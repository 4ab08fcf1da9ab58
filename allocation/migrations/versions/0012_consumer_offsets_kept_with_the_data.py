"""Consumer offsets kept in PostgreSQL, beside the data they describe.

Revision ID: 0012
Revises: 0008
Create Date: 2026-11-28

Expand only: a new table. A build that does not know it goes on committing its
offsets to Kafka alone; a build that does seeks to the stored offset when there
is one, else falls back to Kafka's committed offset.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_offsets",
        sa.Column("consumer_group", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(249), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("consumer_offsets")
