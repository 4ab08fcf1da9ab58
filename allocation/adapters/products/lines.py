"""A batch's allocations in PostgreSQL, read one line at a time and written in bulk at flush.

``SqlAllocations`` implements the domain's ``AllocationSet`` as the in-memory
``Allocations`` does; the contract tests run the same checks against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Executable, delete, select, tuple_
from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import read, write
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.tables import allocations
from allocation.domain.model import AllocationSet, OrderLine, release_order


class AllocationsStore:
    """The allocations table for one session: lookups cached by (sku, order id), writes batched.

    Statements go straight to the session's connection: these rows are never
    ORM objects, so no ORM autoflush is owed before reading or writing them.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        # (sku, orderid) -> {(batch id, qty)} as stored, or as staged to be stored.
        self._held: dict[tuple[str, str], set[tuple[int, int]]] = {}
        # (batch id, orderid, sku, qty) -> True to insert, False to delete, at the next flush
        self._staged: dict[tuple[int, str, str, int], bool] = {}
        self._totals: dict[int, int] = {}

    def _execute(self, statement: Executable, params: Any = None) -> Any:
        return read(self._session).execute(statement, params)

    def holds(self, batch_id: int, line: OrderLine) -> bool:
        """Whether the batch holds the line, as stored or as staged."""
        key = (line.sku, line.orderid)
        if key not in self._held:
            self.prefetch([key])
        return (batch_id, line.qty) in self._held[key]

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Load, in one query, where the lines of these (sku, order id) pairs are held."""
        wanted = self.unknown(keys)
        if wanted:
            skus, orderids = (list(column) for column in zip(*wanted, strict=True))
            rows = run(read(self._session), _HELD, {"skus": skus, "orderids": orderids})
            self.note_held(wanted, rows)

    def unknown(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of these (sku, order id) pairs not looked up yet."""
        return [key for key in set(keys) if key not in self._held]

    def note_held(
        self, looked_up: Iterable[tuple[str, str]], rows: Iterable[tuple[str, str, int, int]]
    ) -> None:
        """What a lookup of ``looked_up`` found: (sku, order id, batch id, qty) rows."""
        for key in looked_up:
            self._held[key] = set()
        for sku, orderid, held_by, qty in rows:
            self._held[(sku, orderid)].add((held_by, qty))

    def largest(self, batch_id: int, limit: int) -> list[OrderLine]:
        """The batch's ``limit`` lines released first, largest first."""
        self.flush()
        rows = self._execute(
            select(allocations.c.orderid, allocations.c.sku, allocations.c.qty)
            .where(allocations.c.batch_id == batch_id)
            .order_by(allocations.c.qty.desc(), allocations.c.orderid.desc())
            .limit(limit)
        )
        return [OrderLine(orderid, sku, qty) for orderid, sku, qty in rows]

    def lines(self, batch_id: int) -> set[OrderLine]:
        """Every line the batch holds (a full read: only iteration needs it)."""
        self.flush()
        rows = self._execute(
            select(allocations.c.orderid, allocations.c.sku, allocations.c.qty).where(
                allocations.c.batch_id == batch_id
            )
        )
        return {OrderLine(orderid, sku, qty) for orderid, sku, qty in rows}

    def stage(
        self, batch_id: int, added: set[OrderLine], removed: set[OrderLine], quantity: int
    ) -> None:
        """Note one batch's changes; ``flush`` writes every staged change at once."""
        for line, insert_it in [(ln, False) for ln in removed] + [(ln, True) for ln in added]:
            row = (batch_id, line.orderid, line.sku, line.qty)
            if self._staged.get(row) is (not insert_it):
                del self._staged[row]  # undoes a change not yet written
            else:
                self._staged[row] = insert_it
            held = self._held.setdefault((line.sku, line.orderid), set())
            if insert_it:
                held.add((batch_id, line.qty))
            else:
                held.discard((batch_id, line.qty))
        self._totals[batch_id] = quantity

    def flush(self) -> None:
        """Three statements whatever the number of batches and lines: delete, insert, totals."""
        deletes = [row for row, insert_it in self._staged.items() if not insert_it]
        inserts = [row for row, insert_it in self._staged.items() if insert_it]
        if deletes:
            key = tuple_(
                allocations.c.batch_id, allocations.c.orderid, allocations.c.sku, allocations.c.qty
            )
            write(self._session, delete(allocations).where(key.in_(deletes)))
        if inserts:
            ids, orderids, skus, quantities = (
                list(column) for column in zip(*inserts, strict=True)
            )
            write(
                self._session,
                _INSERT,
                {"ids": ids, "orderids": orderids, "skus": skus, "qtys": quantities},
            )
        if self._totals:
            write(
                self._session,
                _SET_TOTALS,
                {"ids": list(self._totals), "totals": list(self._totals.values())},
            )
        self._staged, self._totals = {}, {}


# Arrays in, one statement out: the SQL is the same whatever the number of rows. Each
# (sku, order id) probes the index on its own (``prepared``: lookups by a list of keys).
HELD_FROM = (
    "FROM unnest(CAST(:skus AS text[]), CAST(:orderids AS text[])) AS k(sku, orderid) "
    "CROSS JOIN LATERAL (SELECT a.sku, a.orderid, a.batch_id, a.qty FROM allocations AS a "
    "WHERE a.sku = k.sku AND a.orderid = k.orderid OFFSET 0) AS a"
)
_HELD = Prepared("allocation_lines_held", f"SELECT a.sku, a.orderid, a.batch_id, a.qty {HELD_FROM}")
_INSERT = Prepared(
    "allocation_lines_insert",
    "INSERT INTO allocations (batch_id, orderid, sku, qty) "
    "SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:orderids AS text[]), "
    "CAST(:skus AS text[]), CAST(:qtys AS integer[]))",
)
# Each batch found by its id, then updated where it was found (as the products' versions,
# ``repository``).
_SET_TOTALS = Prepared(
    "allocation_batches_totals",
    "UPDATE batches SET allocated_quantity = t.total "
    "FROM (SELECT b.ctid AS found, t.total "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:totals AS integer[])) AS t(id, total) "
    "CROSS JOIN LATERAL (SELECT b.ctid FROM batches AS b WHERE b.id = t.id OFFSET 0) AS b) AS t "
    "WHERE batches.ctid = t.found",
)


class SqlAllocations(AllocationSet):
    """The lines of one stored batch; changes are kept in memory until ``write()``."""

    def __init__(self, store: AllocationsStore, batch_id: int, quantity: int) -> None:
        self._store = store
        self._batch_id = batch_id
        self._added: set[OrderLine] = set()
        self._removed: set[OrderLine] = set()
        self.quantity = quantity

    @classmethod
    def adopt(cls, store: AllocationsStore, batch_id: int, lines: AllocationSet) -> SqlAllocations:
        """Store the lines of a batch that was created in memory and has just been inserted."""
        adopted = cls(store, batch_id, quantity=0)
        for line in lines:
            adopted.add(line)
        adopted.write()
        return adopted

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, OrderLine) or line in self._removed:
            return False
        return line in self._added or self._store.holds(self._batch_id, line)

    def __iter__(self) -> Iterator[OrderLine]:
        return iter((self._store.lines(self._batch_id) - self._removed) | self._added)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def add(self, line: OrderLine) -> None:
        if line in self:
            return
        if line in self._removed:
            self._removed.discard(line)
        else:
            self._added.add(line)
        self.quantity += line.qty

    def remove(self, line: OrderLine) -> None:
        if line not in self:
            return
        if line in self._added:
            self._added.discard(line)
        else:
            self._removed.add(line)
        self.quantity -= line.qty

    def largest(self) -> OrderLine | None:
        stored = self._store.largest(self._batch_id, limit=len(self._removed) + 1)
        candidates = [line for line in stored if line not in self._removed] + list(self._added)
        return max(candidates, key=release_order, default=None)

    @property
    def dirty(self) -> bool:
        return bool(self._added or self._removed)

    def write(self) -> None:
        """Hand pending changes and the new total to the store; a no-op when nothing changed."""
        if not self.dirty:
            return
        self._store.stage(self._batch_id, self._added, self._removed, self.quantity)
        self._added, self._removed = set(), set()
