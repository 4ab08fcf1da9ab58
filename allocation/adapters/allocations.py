"""A batch's allocations in PostgreSQL, read one line at a time and written at flush.

``SqlAllocations`` behaves like the domain's in-memory ``Allocations``; the
contract tests run the same checks against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import and_, delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from allocation.adapters.tables import allocations, batches
from allocation.domain.model import Allocations, OrderLine, release_order


class AllocationsStore:
    """The allocations table for one session, with lookups cached by (sku, order id)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        # (sku, orderid) -> {(batch id, qty)} as stored in the database.
        self._held: dict[tuple[str, str], set[tuple[int, int]]] = {}

    def holds(self, batch_id: int, line: OrderLine) -> bool:
        key = (line.sku, line.orderid)
        if key not in self._held:
            self.prefetch([key])
        return (batch_id, line.qty) in self._held[key]

    def prefetch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Load, in one query, where the lines of these (sku, order id) pairs are held."""
        wanted = [key for key in set(keys) if key not in self._held]
        if not wanted:
            return
        for key in wanted:
            self._held[key] = set()
        rows = self._session.execute(
            select(
                allocations.c.sku, allocations.c.orderid, allocations.c.batch_id, allocations.c.qty
            ).where(tuple_(allocations.c.sku, allocations.c.orderid).in_(wanted))
        )
        for sku, orderid, held_by, qty in rows:
            self._held[(sku, orderid)].add((held_by, qty))

    def largest(self, batch_id: int, limit: int) -> list[OrderLine]:
        rows = self._session.execute(
            select(allocations.c.orderid, allocations.c.sku, allocations.c.qty)
            .where(allocations.c.batch_id == batch_id)
            .order_by(allocations.c.qty.desc(), allocations.c.orderid.desc())
            .limit(limit)
        )
        return [OrderLine(orderid, sku, qty) for orderid, sku, qty in rows]

    def lines(self, batch_id: int) -> set[OrderLine]:
        rows = self._session.execute(
            select(allocations.c.orderid, allocations.c.sku, allocations.c.qty).where(
                allocations.c.batch_id == batch_id
            )
        )
        return {OrderLine(orderid, sku, qty) for orderid, sku, qty in rows}

    def write(
        self, batch_id: int, added: set[OrderLine], removed: set[OrderLine], quantity: int
    ) -> None:
        if removed:
            self._session.execute(
                delete(allocations).where(
                    and_(
                        allocations.c.batch_id == batch_id,
                        tuple_(allocations.c.orderid, allocations.c.sku, allocations.c.qty).in_(
                            [(line.orderid, line.sku, line.qty) for line in removed]
                        ),
                    )
                )
            )
        if added:
            self._session.execute(
                insert(allocations),
                [
                    {"batch_id": batch_id, "orderid": ln.orderid, "sku": ln.sku, "qty": ln.qty}
                    for ln in added
                ],
            )
        self._session.execute(
            update(batches).where(batches.c.id == batch_id).values(allocated_quantity=quantity)
        )
        for line in removed:
            self._held.get((line.sku, line.orderid), set()).discard((batch_id, line.qty))
        for line in added:
            self._held.setdefault((line.sku, line.orderid), set()).add((batch_id, line.qty))


class SqlAllocations(Allocations):
    """The lines of one stored batch; changes are kept in memory until ``write()``."""

    def __init__(self, store: AllocationsStore, batch_id: int, quantity: int) -> None:
        self._store = store
        self._batch_id = batch_id
        self._added: set[OrderLine] = set()
        self._removed: set[OrderLine] = set()
        self.quantity = quantity

    @classmethod
    def adopt(cls, store: AllocationsStore, batch_id: int, lines: Allocations) -> SqlAllocations:
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
        """Write pending changes with the batch's new total; a no-op when nothing changed."""
        if not self.dirty:
            return
        self._store.write(self._batch_id, self._added, self._removed, self.quantity)
        self._added, self._removed = set(), set()
