"""The command consumer: Kafka command topics -> message bus -> PostgreSQL, exactly once.

Each poll returns up to ``consumer_poll_size`` messages; ``inbound`` decodes them
at the edge, ``applier`` applies them (one transaction, or one by one to isolate
poison). The partitions' next offsets are saved in PostgreSQL in the transaction
that applied the poll (``assignment`` seeks there on assignment); when the poll
had dead letters, they are saved only after the letters were acknowledged. A
crash anywhere re-delivers the poll, and the inbox turns the re-delivery into a
no-op. A systemic fault (a missing table, a refused permission) pauses
consumption: nothing is dead-lettered, the poll in hand is tried again, and the
first success resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from allocation import bootstrap
from allocation.adapters import contract, metrics, offsets
from allocation.adapters.avro import AvroCodec
from allocation.adapters.faults import classify, is_transient
from allocation.adapters.positions import is_fatal
from allocation.adapters.security import is_refusal, refused
from allocation.config import Settings
from allocation.entrypoints.applier import Applied, Applier, SystemicFault
from allocation.entrypoints.assignment import (
    Assignment,
    ConsumerBroken,
    StoredOffsets,
    next_offsets,
)
from allocation.entrypoints.dead_letters import DeadLetters
from allocation.entrypoints.health import Health
from allocation.entrypoints.inbound import DeadLetter, Decoder, Inbound
from allocation.entrypoints.pause import Pause
from allocation.entrypoints.retry import Backoff, Stopped
from allocation.entrypoints.starvation import Starvation
from allocation.entrypoints.waiting_sweep import WaitingSweep
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.ports import ConsumedOffset

logger = logging.getLogger(__name__)


class CommandConsumer:
    """Applies the command topics through the message bus, exactly once, until stopped."""

    def __init__(
        self,
        consumer_factory: Callable[[], Consumer],
        dlq_factory: Callable[[], Producer],
        dlq_topic: str,
        codec: AvroCodec,
        bus: MessageBus,
        records: dict[str, str],
        stop: threading.Event,
        group: str,
        stored_offsets: StoredOffsets,
        poll_size: int = 500,
        unexpected_attempts: int = 3,
        health: Health | None = None,
        sweep: WaitingSweep | None = None,
        dead_letter_ack_timeout_s: float = 30.0,
        starved_after_s: float = 20.0,
    ) -> None:
        self._consumer_factory = consumer_factory
        self._consumer = consumer_factory()
        self._decoder = Decoder(codec, records)
        self._stop = stop
        self._poll_size = poll_size
        self._backoff = Backoff(stop)
        self._dead_letters = DeadLetters(
            dlq_factory, dlq_topic, self._backoff, dead_letter_ack_timeout_s
        )
        self._bus = bus
        self._group = group
        self._applier = Applier(bus, self._backoff, unexpected_attempts)
        self._starvation = Starvation(starved_after_s, stored_offsets)
        self._assignment = Assignment(stored_offsets, self._backoff, self._report)
        self._pause = Pause()
        self._sweep = sweep
        self.health = health or Health()
        self.applied = 0  # includes duplicates (applied by doing nothing) and rejections
        self.rejected = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.clients_replaced = 0  # Kafka clients broken for good or starved, and replaced

    @property
    def paused(self) -> bool:
        """Consumption is held back by a systemic fault (what readiness reports)."""
        return self._pause.paused

    def run(self, poll_timeout: float = 0.5) -> None:
        """Consume until stopped; a Kafka client that breaks for good is replaced by a new one.

        The replacement resumes from the stored offsets; whatever the broken one
        had applied beyond them comes again and the inbox absorbs it.
        """
        try:
            while not self._stop.is_set():
                try:
                    self._consume(poll_timeout)
                except ConsumerBroken as exc:
                    logger.error("%s; replacing the Kafka consumer", exc)
                    self._assignment.clear()
                    self._starvation.reset()
                    self._report()
                    with suppress(KafkaException, RuntimeError):
                        self._consumer.close()
                    self._consumer = self._consumer_factory()
                    self.clients_replaced += 1
                    metrics.KAFKA_CLIENTS_REPLACED.labels("consumer", exc.reason).inc()
            self._assignment.commit_on_close(self._consumer)
        finally:
            self._consumer.close()
            self._dead_letters.flush(10)

    def _consume(self, poll_timeout: float) -> None:
        self._consumer.subscribe(
            self._decoder.topics,
            on_assign=self._assignment.on_assign,
            on_revoke=self._assignment.on_revoke,
            on_lost=self._assignment.on_lost,
        )
        while not self._stop.is_set():
            self.health.beat()
            messages = [m for m in self._next_poll(poll_timeout) if not _is_error(m)]
            if messages:
                self.process(messages)
            self._starvation.check(self._consumer, self._assignment.assigned)
            if self._sweep is not None and not self._pause.paused:
                self._sweep.maybe_run()

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
        """Apply, dead-letter, then commit the offsets of one poll's messages.

        On a systemic fault nothing is dead-lettered nor committed: the same poll
        is tried again, with growing pauses up to 5 s, until it goes through (the
        probe). What it applied one by one before the fault comes again as
        duplicates, which the inbox absorbs.
        """
        delay = 0.5
        while True:
            try:
                with metrics.POLL_SECONDS.time():
                    self._process(messages)
            except SystemicFault as exc:
                self._pause.hold(exc.fault.reason)
                metrics.CONSUMER_PAUSED.set(1)
                self.health.not_ready(f"consumption paused: {exc.fault.reason}")
                self.health.beat()  # paused on purpose: alive, not stuck
                if self._stop.wait(delay):
                    raise Stopped("paused consumption") from exc
                delay = min(delay * 2, 5.0)
                continue
            if self._pause.paused:
                self._pause.lift()
                metrics.CONSUMER_PAUSED.set(0)
                self._report()
            return

    def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        inbound: list[Inbound] = []
        dead: list[DeadLetter] = []
        for message in messages:
            decoded = self._backoff.call(
                "decode", partial(self._decoder.decode, message), is_transient
            )
            if isinstance(decoded, Inbound):
                inbound.append(decoded)
            else:
                dead.append(decoded)
        stored = next_offsets(self._group, messages)
        self._starvation.fed((o.topic, o.partition) for o in stored)
        # With a dead letter in hand the offsets wait until it is acknowledged: saved
        # with the commands, they could pass a letter that a crash then never sends.
        applied = self._applier.apply(inbound, () if dead else stored)
        dead.extend(applied.dead)
        self._dead_letters.send(dead)
        if not applied.offsets_saved:
            self._save_offsets(stored)
        applied_at = time.perf_counter()
        self._assignment.commit(self._consumer, messages)
        logger.debug(
            "poll of %d: applied in %.1f ms, offsets committed in %.1f ms",
            len(messages),
            (applied_at - started) * 1000,
            (time.perf_counter() - applied_at) * 1000,
        )
        if applied.duplicates:
            logger.info(
                "%d re-delivered message(s) were already applied; skipped", applied.duplicates
            )
        self.duplicates += applied.duplicates
        self.applied += len(inbound) - len(applied.dead)
        self.rejected += len(applied.rejections)
        self.dead_lettered += len(dead)
        _count(inbound, dead, applied)
        for item in inbound:
            item.span.end()

    def _save_offsets(self, stored: list[ConsumedOffset]) -> None:
        try:
            self._backoff.call("save offsets", lambda: self._bus.save_offsets(stored), is_transient)
        except Exception as exc:
            # Never the messages' fault: pause and try the poll again (its commands come
            # back as duplicates, its dead letters are sent again: at least once).
            raise SystemicFault(classify(exc)) from exc

    def _report(self) -> None:
        if self._pause.paused:
            return  # the pause says why it is not ready
        if self._assignment.assigned:
            self.health.ready(f"{len(self._assignment.assigned)} partitions assigned")
        else:
            self.health.not_ready("no partition assigned")


def _is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if is_fatal(error):
        raise ConsumerBroken(f"fatal consumer error: {error.str()}")
    if is_refusal(error):  # no ACL for the group or a topic: waiting will not grant one
        raise refused(error)
    if error.code() != KafkaError._PARTITION_EOF:
        logger.warning("consumer error: %s", error)
    return True


def _count(inbound: list[Inbound], dead: list[DeadLetter], applied: Applied) -> None:
    """Count each message of a poll once: applied, duplicate (already applied before),
    rejected by a business rule (its CommandRejected sent), or dead-lettered as poison.

    Tallied first, then one ``inc`` per series: a child lookup per message cost the poll
    more than its inbox insert."""
    failed = {id(letter.message) for letter in dead}
    tally: Counter[tuple[str, str, str]] = Counter()
    for item in inbound:
        key = id(item.message)
        if key in failed:
            continue
        if key in applied.rejections:
            outcome, reason = "rejected", applied.rejections[key]
        elif key in applied.waiting_ids:
            outcome, reason = "waiting", ""
        else:
            outcome, reason = ("duplicate" if key in applied.duplicate_ids else "applied"), ""
        tally[(str(item.message.topic()), outcome, reason)] += 1
    for letter in dead:
        tally[(str(letter.message.topic()), "dead_lettered", letter.error_type)] += 1
    for labels, count in tally.items():
        metrics.COMMANDS.labels(*labels).inc(count)


def build(
    settings: Settings, application: bootstrap.Application, stop: threading.Event
) -> CommandConsumer:
    """The consumer of the command topics, applying through ``application``'s bus."""
    records = contract.topic_records(settings)
    return CommandConsumer(
        consumer_factory=bootstrap.command_consumer_factory(settings),
        dlq_factory=lambda: bootstrap.dead_letter_producer(settings),
        dlq_topic=settings.topic_dlq,
        codec=bootstrap.avro_codec(settings),
        bus=application.bus,
        records={topic: records[topic] for topic in settings.command_topics},
        stop=stop,
        group=settings.consumer_group,
        stored_offsets=offsets.reader(application.engine, settings.consumer_group),
        poll_size=settings.consumer_poll_size,
        sweep=WaitingSweep(application.bus, application.engine, settings.waiting_sweep_interval_s),
        dead_letter_ack_timeout_s=settings.dead_letter_ack_timeout_s,
        starved_after_s=settings.consumer_starved_after_s,
    )
