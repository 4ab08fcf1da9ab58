"""Products in PostgreSQL through the SQLAlchemy session of the unit of work."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_attribute, set_committed_value

from allocation.adapters.batched_writes import read, write_then
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.products.lines import AllocationsStore, SqlAllocations
from allocation.adapters.products.mapping import batch_id, stored_batch, stored_product
from allocation.adapters.tables import batches
from allocation.domain import model
from allocation.service_layer.ports import AbstractRepository

# Optimistic concurrency for many products at once: each row changes only if it
# still has the version this unit of work read, and the server fails the transaction
# (``products_unmoved``, migration 0015: a serialization failure) unless every row did, so
# the check needs no round trip of its own before the commit. Each sku finds its row by the
# index on its own (``prepared``: lookups by a list of keys), and the row is updated where it
# was found: a join of the products with the unnested skus, planned generically, hashed a scan
# of the whole table.
_SAVE_VERSIONS = Prepared(
    "allocation_products_versions",
    "WITH saved AS (UPDATE products SET version_number = v.new, event_sequence = v.events "
    "FROM (SELECT p.ctid AS found, v.read, v.new, v.events "
    "FROM unnest(CAST(:skus AS text[]), CAST(:read AS integer[]), CAST(:new AS integer[]), "
    "CAST(:events AS integer[])) AS v(sku, read, new, events) CROSS JOIN LATERAL "
    "(SELECT p.ctid FROM products AS p WHERE p.sku = v.sku OFFSET 0) AS p) AS v "
    "WHERE products.ctid = v.found AND products.version_number = v.read RETURNING 1) "
    "SELECT products_unmoved(count(*), cardinality(CAST(:skus AS text[]))) FROM saved",
)

# Products by sku with their batches: a row per product, a row per batch, told apart by the
# first column and shaped alike (eight columns) for the union of ``prefetch``. Each sku probes
# the indexes on its own (``prepared``: lookups by a list of keys).
PRODUCT_ROWS = (
    "SELECT 'product', p.sku, NULL, p.version_number, p.event_sequence, "
    "CAST(NULL AS integer), CAST(NULL AS integer), CAST(NULL AS date) "
    "FROM unnest(CAST(:products AS text[])) AS k(sku) CROSS JOIN LATERAL (SELECT p.sku, "
    "p.version_number, p.event_sequence FROM products AS p WHERE p.sku = k.sku OFFSET 0) AS p"
)
BATCH_ROWS = (
    "SELECT 'batch', b.sku, b.reference, b.id, b.purchased_quantity, b.allocated_quantity, "
    "b.version, b.eta FROM unnest(CAST(:products AS text[])) AS k(sku) CROSS JOIN LATERAL "
    "(SELECT b.sku, b.reference, b.id, b.purchased_quantity, b.allocated_quantity, b.version, "
    "b.eta FROM batches AS b WHERE b.sku = k.sku OFFSET 0) AS b"
)
_PRODUCTS = Prepared("allocation_products", f"{PRODUCT_ROWS} UNION ALL {BATCH_ROWS}")

ProductRow = tuple[Any, ...]
"""A row of ``PRODUCT_ROWS`` or ``BATCH_ROWS``: kind, sku, then the product's or batch's."""


class SqlProductRepository(AbstractRepository):
    """Loads products ready for the domain and writes them back at flush."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.lines = AllocationsStore(session)
        # Every product handed out, by sku: held here, since the session's identity
        # map alone would let a prefetched product be collected before it is asked for.
        self._ready: dict[str, model.Product] = {}
        self._absent: set[str] = set()  # looked up and not found, in this transaction's snapshot

    def _add(self, product: model.Product) -> None:
        set_attribute(product, "_stored_version", product.version_number)
        set_attribute(product, "_stored_event_sequence", product.event_sequence)
        self._ready[product.sku] = product
        self.session.add(product)

    def _get(self, sku: str) -> model.Product | None:
        if sku not in self._ready and sku not in self._absent:
            self.prefetch([sku])
        return self._ready.get(sku)

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        query = select(model.Product).join(model.Batch).where(batches.c.reference == ref)
        return self._readied(self.session.execute(query).unique().scalars().one_or_none())

    def prefetch(self, skus: Iterable[str], lines: Iterable[tuple[str, str]] = ()) -> None:
        """Load these products with their batches, and where these lines are held: two queries."""
        wanted = self.unknown(skus)
        if wanted:
            self.note_found(wanted, run(read(self.session), _PRODUCTS, {"products": wanted}))
        self.lines.prefetch(lines)

    def unknown(self, skus: Iterable[str]) -> list[str]:
        """Those of these skus not looked up yet."""
        return [sku for sku in set(skus) if sku not in self._ready and sku not in self._absent]

    def note_found(self, looked_up: Iterable[str], rows: Iterable[ProductRow]) -> None:
        """What a lookup of ``looked_up`` found: the rows of ``PRODUCT_ROWS`` and ``BATCH_ROWS``.

        The products are built from them without the ORM's query (``stored_product``), added
        to the session, persistent as if it had loaded them, and readied as loaded ones are."""
        found: list[tuple[str, int, int]] = []
        held: dict[str, list[tuple[int, model.Batch]]] = {}
        for row in rows:
            if row[0] == "product":
                _, sku, _, version, sequence, *_ = row
                found.append((sku, version, sequence))
                continue
            _, sku, reference, stored_id, purchased, allocated, version, eta = row
            batch = stored_batch(stored_id, reference, sku, purchased, allocated, version, eta)
            held.setdefault(sku, []).append((stored_id, batch))
        for sku, version, sequence in found:
            in_order = [batch for _, batch in sorted(held.get(sku, ()), key=lambda b: b[0])]
            product = stored_product(sku, version, sequence, in_order)
            self.session.add(product)
            self._readied(product)
        self._absent.update(set(looked_up) - self._ready.keys())

    def _readied(self, product: model.Product | None) -> model.Product | None:
        """A loaded (or ``stored_product``-built) product as the domain expects it; neither
        runs ``__init__``."""
        if product is None or product.sku in self._ready:
            return product if product is None else self._ready[product.sku]
        # The mapped columns as loaded are in the instance's __dict__ (``inspect(x).dict``).
        stored = vars(product)
        product.events = []
        product.version_number = int(stored["_stored_version"])
        product.event_sequence = int(stored["_stored_event_sequence"])
        for batch in product.batches:
            row = vars(batch)
            batch._allocations = SqlAllocations(
                self.lines, int(row["_id"]), int(row["_stored_allocated_quantity"])
            )
        self._ready[product.sku] = product
        return product

    def flush(self) -> None:
        """Write every seen product: ORM rows, versions (checked), then the batches' lines."""
        self.session.flush()
        self._save_versions()
        for product in self.seen:
            for batch in product.batches:
                self._stage_lines(batch)
        self.lines.flush()

    def _save_versions(self) -> None:
        """Write each changed product's version; a serialization failure if one moved meanwhile.

        The server judges the check (``_SAVE_VERSIONS``), so it goes with the commit's other
        writes (``batched_writes``), in the commit's round trip."""
        changed = []
        for product in self.seen:
            stored = vars(product).get("_stored_version")  # as _readied reads it
            if stored is not None and stored != product.version_number:
                changed.append((product, stored))
        if not changed:
            return
        params = {
            "skus": [p.sku for p, _ in changed],
            "read": [stored for _, stored in changed],
            "new": [p.version_number for p, _ in changed],
            # Every event moves the version too (see Product), so this is never left behind.
            "events": [p.event_sequence for p, _ in changed],
        }

        def saved() -> None:
            for product, _ in changed:
                set_committed_value(product, "_stored_version", product.version_number)
                set_committed_value(product, "_stored_event_sequence", product.event_sequence)

        write_then(self.session, _SAVE_VERSIONS, params, saved)

    def _stage_lines(self, batch: model.Batch) -> None:
        allocations = batch._allocations
        if isinstance(allocations, SqlAllocations):
            allocations.write()
        else:  # a batch created in this unit of work: its lines are all new
            batch._allocations = SqlAllocations.adopt(self.lines, batch_id(batch), allocations)
