"""The product store: how a ``Product`` aggregate lives in PostgreSQL, read top to bottom.

1. ``mapping``: the domain classes are mapped imperatively onto ``products`` and
   ``batches``; a product loads with its batches, never with its lines.
2. ``repository``: ``SqlProductRepository`` loads products (by sku, by batch
   reference, or many at once before a poll of commands) and readies each one
   for the domain: no events yet, the version it was read at, and for every
   batch an ``SqlAllocations`` in place of an in-memory set of lines.
3. ``lines``: ``SqlAllocations`` answers "does this batch hold this line?" one
   line at a time, through an ``AllocationsStore`` that caches lookups and
   batches writes for the whole unit of work.
4. At flush the repository writes: the ORM rows (new products and batches,
   purchased quantities), every batch's new and released lines and its
   allocated total, and every changed product's version in one conditional
   UPDATE (the optimistic-concurrency check), sent last of the commit's writes
   and checked on its row count before the commit (``batched_writes``).
"""

from allocation.adapters.products.mapping import start_mappers
from allocation.adapters.products.repository import SqlProductRepository

__all__ = ["SqlProductRepository", "start_mappers"]
