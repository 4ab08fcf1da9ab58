"""Vacuum the outbox often: it is a queue, and its dead rows slow the relay down.

Every published row leaves a dead entry in the relay's index of pending rows
until a vacuum clears it, and the relay reads that index from its oldest end.
Vacuuming after every few thousand changes, without cost-based pauses, keeps
those reads short however fast rows come and go.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, "
        "autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0, "
        "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
        "autovacuum_vacuum_cost_delay, autovacuum_analyze_scale_factor, "
        "autovacuum_analyze_threshold)"
    )
