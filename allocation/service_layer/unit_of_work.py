"""The unit of work: one database transaction around everything one message changes.

Domain rows, the inbox record, the outbox rows and the read model are all written
in that transaction; a unit of work left without ``commit()`` rolls back.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha1
from types import TracebackType
from typing import Self

from allocation.domain import commands, events, model
from allocation.domain.errors import DomainError, InvalidValue
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractInbox,
    AbstractOffsets,
    AbstractOutbox,
    AbstractRepository,
    AbstractResponses,
    AbstractWaiting,
    OutboxEntry,
)

EventRoutes = Mapping[type[events.Event], str]
"""Destination topic of each integration event type."""

EVENT_ID_NAMESPACE = uuid.UUID("6f1c3a52-9e1d-4f0a-9c57-1d0c2b8e7a41")
"""Namespace of the uuid5 event ids: fixed forever, or re-processing would change ids."""


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
# RFC 9562's version (5) and variant bits, over the first 128 bits of the SHA-1 digest.
_CLEARED = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_5 = (5 << 76) | (0x8000 << 48)


def event_id(causation_id: str, position: int) -> uuid.UUID:
    """The id of the ``position``-th event (from 0) caused by one inbound message.

    Derived, not drawn: applying the same message again (a redelivery after the
    inbox forgot it, a replay) yields the same ids, so downstream dedupes them.
    It is ``uuid.uuid5(EVENT_ID_NAMESPACE, f"{causation_id}#{position}")``, computed in
    half the time (one per event on the consumer's hot path).
    """
    digest = sha1(_NAMESPACE_BYTES + f"{causation_id}#{position}".encode()).digest()
    return uuid.UUID(int=int.from_bytes(digest[:16]) & _CLEARED | _VERSION_5)


class ConcurrencyConflict(Exception):
    """Another transaction changed the same data first; the whole unit may be retried."""


@dataclass(frozen=True)
class Source:
    """Where an inbound Kafka message was read: told back to its sender on a rejection."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Envelope:
    """Identity of the inbound message being handled, for the inbox and the outbox.

    ``deduplicate`` is False for requests that have no stable identity to
    recognise a redelivery by (an HTTP call): their id is only the events' cause.
    """

    message_id: str
    correlation_id: str | None = None
    deduplicate: bool = True
    # Keys the same message had under an older identity rule: any of them in the
    # inbox means it was applied already (rolling upgrades). Never recorded.
    aliases: tuple[str, ...] = ()
    # W3C trace context of the span applying the message; its events are sent under it.
    traceparent: str | None = None
    source: Source | None = None  # None for an HTTP request

    def __post_init__(self) -> None:
        if self.correlation_id is not None:
            require_correlation_id(self.correlation_id)


MAX_CORRELATION_ID_BYTES = 512
"""The outbox stores a correlation id in 512 characters; counted in bytes, it always fits."""


def require_correlation_id(value: str) -> str:
    """A correlation id the outbox can store and a Kafka header can carry; else InvalidValue."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_CORRELATION_ID_BYTES:
        raise InvalidValue(
            f"correlation id is {size} bytes of UTF-8; at most {MAX_CORRELATION_ID_BYTES}"
            " are allowed"
        )
    if not value.isprintable():
        raise InvalidValue("correlation id must not contain control or unprintable characters")
    return value


@dataclass(frozen=True)
class Wanted:
    """What a group of commands will read: products by sku, order lines, inbox ids."""

    skus: frozenset[str]
    lines: frozenset[tuple[str, str]]
    message_ids: frozenset[str]


def wanted_by(
    items: Sequence[tuple[commands.Command, Envelope | None]],
) -> Wanted:
    """Decide which rows these commands will need, so they can be fetched in a few queries.

    Commands are not validated yet: identifiers the domain will reject are not looked up.
    """
    skus, lines, ids = set(), set(), set()
    for command, envelope in items:
        if isinstance(command, commands.Allocate | commands.CreateBatch) and valid_identifier(
            command.sku
        ):
            skus.add(command.sku)
            if isinstance(command, commands.Allocate) and valid_identifier(command.orderid):
                lines.add((command.sku, command.orderid))
        if envelope is not None and envelope.deduplicate:
            ids.add(envelope.message_id)
            ids.update(envelope.aliases)
    return Wanted(frozenset(skus), frozenset(lines), frozenset(ids))


def valid_identifier(identifier: object) -> bool:
    """Whether the domain accepts ``identifier`` (as a sku, an order id, a reference)."""
    try:
        model.require_text("identifier", identifier)
    except DomainError:
        return False
    return True


class AbstractUnitOfWork(abc.ABC):
    """The ports of one transaction, and its lifecycle: enter, handle, commit or roll back."""

    products: AbstractRepository
    inbox: AbstractInbox
    outbox: AbstractOutbox
    views: AbstractAllocationsView
    responses: AbstractResponses
    offsets: AbstractOffsets
    waiting: AbstractWaiting

    def __init__(self, routes: EventRoutes) -> None:
        self._routes = routes
        self._envelope: Envelope | None = None
        self._pending: list[OutboxEntry] = []
        self._position = 0

    def __enter__(self) -> Self:
        self._envelope = None
        self._pending = []
        self._position = 0
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    def prefetch(self, wanted: Wanted) -> None:
        """Load in bulk what the commands about to be handled here will read."""
        self.products.prefetch(wanted.skus, wanted.lines)
        self.inbox.prefetch(wanted.message_ids)
        self.waiting.prefetch(wanted.skus)

    def begin_message(self, envelope: Envelope | None) -> bool:
        """Start handling one inbound message; False if the inbox has already seen it.

        Events raised from here on carry this message as their cause.
        """
        self._envelope = envelope
        self._position = 0
        if envelope is None or not envelope.deduplicate:
            return True
        return self.inbox.record(envelope.message_id, envelope.aliases)

    @contextmanager
    def handling(self, envelope: Envelope) -> Iterator[None]:
        """Raise events on behalf of a message applied earlier (an order that waited), then go
        back to the message being handled. Its inbox record was written when it was read."""
        outer = self._envelope, self._position
        self._envelope, self._position = envelope, 0
        try:
            yield
        finally:
            self._envelope, self._position = outer

    def collect_new_events(self) -> Iterator[events.Event]:
        """Hand over events raised since the last call; integration events also go to the outbox."""
        for product in self.products.take_handed():
            while product.events:
                event = product.events.pop(0)
                self._stage(event)
                yield event

    @property
    def envelope(self) -> Envelope | None:
        """The inbound message being handled (``begin_message``), if any."""
        return self._envelope

    def emit(self, event: events.Event, envelope: Envelope | None = None) -> None:
        """Stage an integration event raised by no product (a rejection, say).

        ``envelope`` names its cause when that is not the message being handled:
        such an event is its cause's only one, at position 0.
        """
        if envelope is None:
            self._stage(event)
        else:
            self._stage(event, envelope, position=0)

    def commit(self) -> None:
        """Write everything staged, outbox last, and commit the transaction."""
        for _ in self.collect_new_events():
            pass
        # Domain rows first: a race for the same product meets on them, before the outbox's
        # per-key locks are taken (the products' version check, which the server judges, is
        # sent last with the rows: ``batched_writes``).
        self._flush()
        self.outbox.add(self._pending)
        self._pending = []
        self._commit()

    def _stage(
        self, event: events.Event, envelope: Envelope | None = None, position: int | None = None
    ) -> None:
        topic = self._routes.get(type(event))
        if topic is None:
            return
        # A rejection is keyed as its command was; a product's event by its sku.
        key = (
            event.key if isinstance(event, events.CommandRejected) else getattr(event, "sku", None)
        )
        if not isinstance(key, str):
            raise TypeError(f"{type(event).__name__} is routed to {topic} but has no sku to key by")
        if envelope is None:
            envelope = self._envelope
        if position is None:
            # Position among the message's events routed out, counted the same way on every run.
            position, self._position = self._position, self._position + 1
        self._pending.append(
            OutboxEntry(
                event=event,
                topic=topic,
                key=key,
                occurred_at=datetime.now(UTC),
                causation_id=envelope.message_id if envelope else None,
                correlation_id=envelope.correlation_id if envelope else None,
                event_id=event_id(envelope.message_id, position) if envelope else uuid.uuid4(),
                traceparent=envelope.traceparent if envelope else None,
            )
        )

    @abc.abstractmethod
    def _flush(self) -> None:
        """Write pending changes without committing them."""

    @abc.abstractmethod
    def _commit(self) -> None:
        """Commit the transaction."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Discard everything not committed; harmless after a commit."""
