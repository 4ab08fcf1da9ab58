"""Outbox rows name the schema version their payload was written for.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

Expand only: nullable, so a build that does not write it keeps working, and the
relay reads NULL as "encode with the relay's own schema" (as before).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("schema_version", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "schema_version")
