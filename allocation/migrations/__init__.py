"""The database schema's migrations (Alembic), and the oldest revision the code can run on."""

OLDEST_SCHEMA_REVISION = "0015"
"""The oldest schema the consumer and relay work with; they refuse to start on anything older.

Not "the latest": in a rolling deploy old and new code share one schema, so a
migration that only adds (0002 reorders an index, 0003 tunes autovacuum) leaves
this alone. Raise it when the code starts to need a migration's change: 0012, the
consumer's offsets table, which the consumer writes in every poll's transaction; 0013,
the table of orders waiting for their sku, which every poll reads; 0015, the function that
checks the products' versions in the same round trip as the commit.
"""
