"""Allocations lose the surrogate id and the per-row foreign key check; batches are never deleted.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28

Each allocated line cost PostgreSQL an index entry for the surrogate ``id`` that nothing
reads, and the foreign key's per-row trigger (a ``SELECT ... FOR KEY SHARE`` on the batch).
Measured by ``python -m bench.allocations_table --migrated`` (this migration, up and down
before each round; PostgreSQL's backend CPU per line for the unit of work's insert, totals and
commit, median of 9 rounds): 18.1 µs at 0013, 11.7 at 0014 with 200 lines per transaction;
27.7 and 21.2 with 50. About 5 µs of it was the foreign key (README, "The allocations table").

- ``id`` goes; ``uq_allocations_line (batch_id, qty, orderid, sku)``, on NOT NULL columns,
  is the row's key (and its replica identity). No build reads or writes ``id``: this
  release's, the previous one's (``INSERT ... (batch_id, orderid, sku, qty)``, deletes by
  the four columns) and every one before, so dropping it is safe while they still run. It is
  not promoted to PRIMARY KEY: that needs a new index (a unique constraint's index cannot be
  reused by ``ADD PRIMARY KEY USING INDEX``), built under a lock that blocks writes, for no gain.
- The foreign key to ``batches`` goes; its guarantee (no line points at a missing batch)
  stays, kept by two things. The code writes a line only for a batch loaded or inserted in
  the same transaction, under the lock its unit of work takes on the product row first
  (``SqlProductRepository.flush``: the versioned UPDATE, then the lines). And batches are
  never deleted: no build has ever deleted one, and now PostgreSQL refuses to
  (``batches_are_kept``: a statement-level trigger on DELETE, TRUNCATE and UPDATE OF id,
  which costs the hot path nothing: its UPDATE of the totals names no id).

Locks: every step is catalog-only (``DROP COLUMN`` leaves the values in the heap until rows
are rewritten; the unique index is kept as it is), so ACCESS EXCLUSIVE on ``batches`` then
``allocations``, taken first and together, held for milliseconds whatever the tables' size,
once the transactions already using them end: allocating waits that long, reads of the
read model (``allocations_view``) do not. The downgrade rewrites ``allocations`` (a new
``bigserial`` column fills every row) under ACCESS EXCLUSIVE, and validates the foreign key
afterwards without blocking writes.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both tables at once, in the order every unit of work takes them (a product is loaded with
    # its batches before its lines are read): taken one by one, the second could deadlock with
    # a transaction that holds it and waits for the first.
    op.execute("LOCK TABLE batches, allocations IN ACCESS EXCLUSIVE MODE")
    op.execute(
        """
        CREATE FUNCTION batches_are_kept() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'batches are never deleted, nor their id changed: allocations '
                'refer to them (migration 0014)' USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER batches_are_kept BEFORE DELETE OR TRUNCATE OR UPDATE OF id ON batches "
        "FOR EACH STATEMENT EXECUTE FUNCTION batches_are_kept()"
    )
    op.drop_constraint("allocations_batch_id_fkey", "allocations", type_="foreignkey")
    op.drop_column("allocations", "id")  # its primary key and sequence go with it
    op.execute("ALTER TABLE allocations REPLICA IDENTITY USING INDEX uq_allocations_line")


def downgrade() -> None:
    op.execute("ALTER TABLE allocations REPLICA IDENTITY DEFAULT")
    op.execute("ALTER TABLE allocations ADD COLUMN id bigserial PRIMARY KEY")
    op.execute(
        "ALTER TABLE allocations ADD CONSTRAINT allocations_batch_id_fkey "
        "FOREIGN KEY (batch_id) REFERENCES batches (id) NOT VALID"
    )
    op.execute("ALTER TABLE allocations VALIDATE CONSTRAINT allocations_batch_id_fkey")
    op.execute("DROP TRIGGER batches_are_kept ON batches")
    op.execute("DROP FUNCTION batches_are_kept()")
