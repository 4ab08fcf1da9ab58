"""A function that fails a transaction whose products moved since it read them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29

A unit of work writes each changed product's version only where the row still has the
version it read, and gave up (a serialization failure, retried whole) when fewer rows
changed than it expected. The code judged that count after the statement returned, so the
``COMMIT`` had to wait for another round trip. ``products_unmoved(changed, expected)`` judges
it in the server instead, raising ``serialization_failure`` (SQLSTATE 40001, what a conflict
is in this service), so the version check can go in the same round trip as the ``COMMIT``
that follows it (``adapters/batched_writes.py``).

Only adds a function: the previous release runs on this schema unchanged. This release
needs it (``OLDEST_SCHEMA_REVISION``). PostgreSQL grants EXECUTE on a new function to
PUBLIC, so the service's role may call it.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION products_unmoved(changed bigint, expected bigint) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            IF changed <> expected THEN
                RAISE EXCEPTION '% of % products changed since they were read',
                    expected - changed, expected USING ERRCODE = 'serialization_failure';
            END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION products_unmoved(bigint, bigint)")
