"""What a group of commands reads, in one round trip.

Before a group of commands (a poll, or the API's concurrent requests) is applied, the
unit of work loads what they will read: the products with their batches, where their
order lines are held already, which of their inbound ids the inbox has seen, and which
of their skus have orders waiting. These were a statement each (the products the ORM's
query); here they are one, its rows told apart by their first column, and each answer
handed to the adapter that asked (``SqlProductRepository``, ``AllocationsStore``,
``SqlInbox``, ``SqlWaiting``), as their own lookups would have.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import read
from allocation.adapters.inbox import FOUND_FROM, SqlInbox
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.products import SqlProductRepository
from allocation.adapters.products.lines import HELD_FROM
from allocation.adapters.products.repository import BATCH_ROWS, PRODUCT_ROWS, ProductRow
from allocation.adapters.waiting import HOLDING_FROM, SqlWaiting
from allocation.service_layer.unit_of_work import Wanted

_NULLS = "NULL, CAST(NULL AS integer), CAST(NULL AS integer)"
_MORE_NULLS = "CAST(NULL AS integer), CAST(NULL AS integer), CAST(NULL AS date)"
# The lookups of ``repository._PRODUCTS``, ``lines._HELD``, ``inbox._FOUND`` and
# ``waiting._HOLDING``, unchanged, their rows widened to the products' eight columns.
_ROWS = Prepared(
    "allocation_prefetch",
    f"{PRODUCT_ROWS} UNION ALL {BATCH_ROWS} "
    f"UNION ALL SELECT 'held', a.sku, a.orderid, a.batch_id, a.qty, {_MORE_NULLS} {HELD_FROM} "
    f"UNION ALL SELECT 'seen', i.message_id, {_NULLS}, {_MORE_NULLS} {FOUND_FROM} "
    f"UNION ALL SELECT 'waits', k.sku, {_NULLS}, {_MORE_NULLS} {HOLDING_FROM}",
)


def prefetch_rows(
    session: Session,
    products: SqlProductRepository,
    inbox: SqlInbox,
    waiting: SqlWaiting,
    wanted: Wanted,
) -> None:
    """Look up ``wanted``'s products, lines, inbound ids and waiting skus not looked up yet."""
    lines = products.lines
    unknown, keys = products.unknown(wanted.skus), lines.unknown(wanted.lines)
    ids, skus = inbox.unchecked(wanted.message_ids), waiting.unchecked(wanted.skus)
    if not (unknown or keys or ids or skus):
        return
    params = {
        "products": unknown,
        "skus": [sku for sku, _ in keys],
        "orderids": [orderid for _, orderid in keys],
        "ids": ids,
        "waiting": skus,
    }
    stored: list[ProductRow] = []
    held: list[tuple[str, str, int, int]] = []
    seen: list[str] = []
    holding: list[str] = []
    for row in run(read(session), _ROWS, params):
        kind, key = row[0], row[1]
        if kind == "held":
            held.append((key, row[2], row[3], row[4]))
        elif kind == "seen":
            seen.append(key)
        elif kind == "waits":
            holding.append(key)
        else:
            stored.append(tuple(row))
    products.note_found(unknown, stored)
    lines.note_held(keys, held)
    inbox.note_found(ids, seen)
    waiting.note_holding(skus, holding)
