"""Orders that arrive before their sku's first batch wait for it, for a while.

Commands travel on separate topics, so an ``Allocate`` may be read before the
``CreateBatch`` that gives its sku a first batch, though it was sent after it.
Read from a topic, such an order waits, in the transaction that read it and
beside its inbox record; the transaction of the sku's first batch applies the
orders waiting for it, oldest first (``MessageBus``). One that waits longer
than the policy's ``wait`` is rejected as ``InvalidSku``. An HTTP caller waits
for nobody: it is answered at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from allocation.domain import commands
from allocation.domain.errors import InvalidSku
from allocation.service_layer.ports import WaitingCommand
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


class Waiting:
    """The type of ``WAITING``: no string a handler could return by chance (a batch named
    "waiting") can pass for it."""

    def __repr__(self) -> str:
        return "WAITING"


WAITING = Waiting()
"""What the ``allocate`` handler returns for an order it keeps waiting."""


@dataclass(frozen=True)
class WaitingPolicy:
    """How long an order read from a topic may wait for its sku; zero: it is rejected at once."""

    wait: timedelta = timedelta(0)

    def park(self, command: commands.Allocate, uow: AbstractUnitOfWork) -> bool:
        """Keep the order waiting (in ``uow``) if it may wait: read from a topic, wait > 0."""
        envelope = uow.envelope
        if self.wait <= timedelta(0) or envelope is None or envelope.source is None:
            return False  # nothing waits, or an HTTP caller waiting for its answer
        uow.waiting.add(WaitingCommand(command, envelope), self.wait)
        return True


NO_WAITING = WaitingPolicy()


def expired(command: commands.Allocate) -> InvalidSku:
    """The rejection of an order that waited for its sku in vain."""
    return InvalidSku(
        f"Invalid sku {command.sku}: no batch of it arrived while the order waited"
        " (UNKNOWN_SKU_WAIT_S)"
    )
