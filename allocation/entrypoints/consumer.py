"""The command consumer: Kafka command topics -> message bus -> PostgreSQL, exactly once.

Each poll returns up to ``consumer_poll_size`` messages. Messages that cannot
become a command are set aside for the dead-letter queue; the rest are applied
in ONE transaction that also records each message in the inbox. If that
transaction fails for a reason other than a transient fault, the poll is applied
again one message at a time, so a rejected message goes to the DLQ alone. Only
when the transaction committed and the dead letters were acknowledged does the
consumer commit the offsets. A crash anywhere re-delivers the poll, and the
inbox turns the re-delivery into a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from allocation import bootstrap
from allocation.adapters import contract
from allocation.adapters.avro import AvroCodec, PoisonMessage
from allocation.adapters.faults import classify, is_transient
from allocation.adapters.kafka import (
    Outgoing,
    dead_letter_headers,
    header,
    message_identity,
    produce_and_wait,
)
from allocation.adapters.positions import Partition, Positions, is_fatal
from allocation.adapters.wire import COMMAND_DECODERS, check_command
from allocation.config import Settings
from allocation.domain import commands
from allocation.domain.errors import DomainError
from allocation.entrypoints.retry import Backoff
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import Envelope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """A message decoded into a command, with the identity the inbox knows it by."""

    message: Message
    command: commands.Command
    envelope: Envelope


@dataclass(frozen=True)
class DeadLetter:
    """A message set aside for the DLQ, with what was wrong with it."""

    message: Message
    error_type: str
    error_message: str


class ConsumerBroken(Exception):
    """librdkafka reported a fatal error (a fenced static member, say): this client is done."""


class CommandConsumer:
    """Applies the command topics through the message bus, exactly once, until stopped."""

    def __init__(
        self,
        consumer_factory: Callable[[], Consumer],
        dlq: Producer,
        dlq_topic: str,
        codec: AvroCodec,
        bus: MessageBus,
        records: dict[str, str],
        stop: threading.Event,
        poll_size: int = 500,
        unexpected_attempts: int = 3,
    ) -> None:
        self._consumer_factory = consumer_factory
        self._consumer = consumer_factory()
        self._dlq = dlq
        self._dlq_topic = dlq_topic
        self._codec = codec
        self._bus = bus
        self._decoders = {topic: COMMAND_DECODERS[name] for topic, name in records.items()}
        self._stop = stop
        self._poll_size = poll_size
        self._unexpected_attempts = unexpected_attempts
        self._backoff = Backoff(stop)
        self._positions = Positions()
        self.applied = 0  # includes duplicates, which are applied by doing nothing
        self.duplicates = 0
        self.dead_lettered = 0

    def run(self, poll_timeout: float = 0.5) -> None:
        """Consume until stopped; a Kafka client that breaks for good is replaced by a new one.

        The replacement resumes from the committed offsets; whatever the broken
        one had applied but not committed comes again and the inbox absorbs it.
        """
        try:
            while not self._stop.is_set():
                try:
                    self._consume(poll_timeout)
                except ConsumerBroken as exc:
                    logger.error("%s; replacing the Kafka consumer", exc)
                    self._positions.clear()
                    with suppress(KafkaException, RuntimeError):
                        self._consumer.close()
                    self._consumer = self._consumer_factory()
            self._commit_on_close()
        finally:
            self._consumer.close()
            self._dlq.flush(10)

    def _consume(self, poll_timeout: float) -> None:
        self._consumer.subscribe(
            list(self._decoders), on_assign=_log_assignment, on_revoke=self._on_revoke
        )
        while not self._stop.is_set():
            messages = [m for m in self._next_poll(poll_timeout) if not _is_error(m)]
            if messages:
                self.process(messages)

    def _next_poll(self, timeout: float) -> list[Message]:
        """Whatever has arrived, up to a poll's size; waits only while nothing has.

        A poll is never held back to fill up: under light load each message is
        applied as soon as it arrives, under heavy load polls fill by themselves.
        """
        ready = self._consumer.consume(self._poll_size, timeout=0)
        if ready:
            return ready
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self._consumer.consume(self._poll_size - 1, timeout=0)]

    def process(self, messages: list[Message]) -> None:
        """Apply, dead-letter, then commit the offsets of one poll's messages."""
        started = time.perf_counter()
        inbound: list[Inbound] = []
        dead: list[DeadLetter] = []
        for message in messages:
            decoded = self._backoff.call("decode", partial(self._decode, message), is_transient)
            if isinstance(decoded, Inbound):
                inbound.append(decoded)
            else:
                dead.append(decoded)
        rejected = self._apply(inbound)
        dead.extend(rejected)
        self._dead_letter(dead)
        applied_at = time.perf_counter()
        self._commit(messages)
        logger.debug(
            "poll of %d: applied in %.1f ms, offsets committed in %.1f ms",
            len(messages),
            (applied_at - started) * 1000,
            (time.perf_counter() - applied_at) * 1000,
        )
        self.applied += len(inbound) - len(rejected)
        self.dead_lettered += len(dead)

    def _decode(self, message: Message) -> Inbound | DeadLetter:
        topic = str(message.topic())
        try:
            record = self._codec.decode(topic, message.value())
            command = self._decoders[topic](record)
            # The limits, checked at the edge: a value over one never reaches the database.
            check_command(command)
            envelope = Envelope(
                message_identity(message), correlation_id=header(message, contract.CORRELATION_ID)
            )
        except (PoisonMessage, DomainError) as exc:
            fault = classify(exc)
            return DeadLetter(message, fault.name, fault.reason)
        except (KeyError, TypeError, ValueError) as exc:
            return DeadLetter(message, "InvalidRecord", f"{type(exc).__name__}: {exc}")
        return Inbound(message, command, envelope)

    def _apply(self, inbound: list[Inbound]) -> list[DeadLetter]:
        if not inbound:
            return []
        items = [(i.command, i.envelope) for i in inbound]
        try:
            outcomes = self._backoff.call(
                "apply poll", lambda: self._bus.handle_many(items), is_transient
            )
            self._count_duplicates(sum(outcome.duplicate for outcome in outcomes))
            return []
        except Exception as exc:
            logger.info("poll of %d failed (%s); applying one by one", len(items), exc)
        return [dead for item in inbound if (dead := self._apply_one(item)) is not None]

    def _apply_one(self, item: Inbound) -> DeadLetter | None:
        for attempt in range(1, self._unexpected_attempts + 1):
            try:
                outcome = self._backoff.call(
                    "apply", lambda: self._bus.handle(item.command, item.envelope), is_transient
                )
                self._count_duplicates(int(outcome.duplicate))
                return None
            except DomainError as exc:
                return DeadLetter(item.message, type(exc).__name__, str(exc))
            except Exception as exc:
                logger.exception("unexpected error applying %s (attempt %d)", item.command, attempt)
                last = exc
        return DeadLetter(item.message, type(last).__name__, f"unexpected error: {last}")

    def _count_duplicates(self, duplicates: int) -> None:
        if duplicates:
            logger.info("%d re-delivered message(s) were already applied; skipped", duplicates)
            self.duplicates += duplicates

    def _dead_letter(self, dead: list[DeadLetter]) -> None:
        if dead:
            self._backoff.call("dead-letter", lambda: self._produce_dead(dead), is_transient)

    def _produce_dead(self, dead: list[DeadLetter]) -> None:
        for letter in dead:
            logger.warning(
                "dead-lettering %s[%s]@%s: %s: %s",
                letter.message.topic(),
                letter.message.partition(),
                letter.message.offset(),
                letter.error_type,
                letter.error_message,
            )
        produce_and_wait(self._dlq, [self._letter(letter) for letter in dead])

    def _letter(self, letter: DeadLetter) -> Outgoing:
        headers = dead_letter_headers(letter.message, letter.error_type, letter.error_message)
        return Outgoing(self._dlq_topic, letter.message.key(), letter.message.value(), headers)

    def _commit(self, messages: list[Message]) -> None:
        """Commit the poll's offsets without waiting for the broker's answer.

        The database transaction is already durable, so an offset commit that
        fails or is lost only means a re-delivery, which the inbox absorbs; not
        waiting for it keeps its round trip out of every poll's latency.
        """
        moved = self._positions.advance(
            (str(m.topic()), m.partition() or 0, m.offset() or 0) for m in messages
        )
        try:
            self._consumer.commit(offsets=self._offsets(moved), asynchronous=True)
        except KafkaException as exc:
            if exc.args and is_fatal(exc.args[0]):
                raise ConsumerBroken(f"fatal error committing offsets: {exc}") from exc
            logger.warning("offset commit failed (%s); the poll may be re-delivered", exc)

    def _offsets(self, partitions: set[Partition] | None = None) -> list[TopicPartition]:
        return [TopicPartition(*position) for position in self._positions.to_commit(partitions)]

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("revoked %s", _partition_list(partitions))
        self._positions.forget((tp.topic, tp.partition) for tp in partitions)

    def _commit_on_close(self) -> None:
        if not self._positions:
            return
        try:
            self._consumer.commit(offsets=self._offsets(), asynchronous=False)
        except KafkaException as exc:
            logger.warning(
                "final offset commit failed (%s); some messages may be re-delivered", exc
            )


def _is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if is_fatal(error):
        raise ConsumerBroken(f"fatal consumer error: {error.str()}")
    if error.code() != KafkaError._PARTITION_EOF:
        logger.warning("consumer error: %s", error)
    return True


def _log_assignment(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    logger.info("assigned %s", _partition_list(partitions))


def _partition_list(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def build(
    settings: Settings, application: bootstrap.Application, stop: threading.Event
) -> CommandConsumer:
    """The consumer of the command topics, applying through ``application``'s bus."""
    records = contract.topic_records(settings)
    return CommandConsumer(
        consumer_factory=bootstrap.command_consumer_factory(settings),
        dlq=bootstrap.dead_letter_producer(settings),
        dlq_topic=settings.topic_dlq,
        codec=bootstrap.avro_codec(settings),
        bus=application.bus,
        records={topic: records[topic] for topic in settings.command_topics},
        stop=stop,
        poll_size=settings.consumer_poll_size,
    )
