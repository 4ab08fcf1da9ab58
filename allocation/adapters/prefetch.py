"""What a group of commands reads besides its products, in one round trip.

Before a group of commands (a poll, or the API's concurrent requests) is applied, the
unit of work loads what they will read: the products with their batches (the ORM's
query), where their order lines are held already, which of their inbound ids the inbox
has seen, and which of their skus have orders waiting. The last three were a statement
each; here they are one, its rows told apart by their first column, and each answer
handed to the adapter that asked (``AllocationsStore``, ``SqlInbox``, ``SqlWaiting``),
as their own lookups would have. A round trip fewer per group, two for the consumer.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import read
from allocation.adapters.inbox import FOUND_FROM, SqlInbox
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.products.lines import HELD_FROM, AllocationsStore
from allocation.adapters.waiting import HOLDING_FROM, SqlWaiting
from allocation.service_layer.unit_of_work import Wanted

_NULLS = "NULL, CAST(NULL AS integer), CAST(NULL AS integer)"
# The three lookups of ``lines._HELD``, ``inbox._FOUND`` and ``waiting._HOLDING``, unchanged.
_ROWS = Prepared(
    "allocation_prefetch_rows",
    f"SELECT 'held', a.sku, a.orderid, a.batch_id, a.qty {HELD_FROM} "
    f"UNION ALL SELECT 'seen', i.message_id, {_NULLS} {FOUND_FROM} "
    f"UNION ALL SELECT 'waits', k.sku, {_NULLS} {HOLDING_FROM}",
)


def prefetch_rows(
    session: Session,
    lines: AllocationsStore,
    inbox: SqlInbox,
    waiting: SqlWaiting,
    wanted: Wanted,
) -> None:
    """Look up ``wanted``'s lines, inbound ids and waiting skus not looked up yet."""
    keys, ids = lines.unknown(wanted.lines), inbox.unchecked(wanted.message_ids)
    skus = waiting.unchecked(wanted.skus)
    if not (keys or ids or skus):
        return
    params = {
        "skus": [sku for sku, _ in keys],
        "orderids": [orderid for _, orderid in keys],
        "ids": ids,
        "waiting": skus,
    }
    held: list[tuple[str, str, int, int]] = []
    seen: list[str] = []
    holding: list[str] = []
    for kind, key, orderid, batch_id, qty in run(read(session), _ROWS, params):
        if kind == "held":
            held.append((key, orderid, batch_id, qty))
        elif kind == "seen":
            seen.append(key)
        else:
            holding.append(key)
    lines.note_held(keys, held)
    inbox.note_found(ids, seen)
    waiting.note_holding(skus, holding)
