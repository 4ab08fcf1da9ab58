"""The consumer's edge: a Kafka message becomes a command to apply, or a dead letter.

Everything the message alone decides is decided here, before any transaction:
its Avro value, its record, the README's limits on its fields and its
correlation id. A header that does not decode is taken as absent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message
from opentelemetry.trace import Span

from allocation.adapters import contract, tracing
from allocation.adapters.avro import AvroCodec, PoisonMessage
from allocation.adapters.faults import Fault, classify
from allocation.adapters.kafka import (
    MessageHeaders,
    Outgoing,
    dead_letter_headers,
    header,
    legacy_identity,
    message_headers,
    message_identity,
)
from allocation.adapters.wire import COMMAND_DECODERS, check_command
from allocation.domain import commands
from allocation.domain.errors import DomainError
from allocation.service_layer.unit_of_work import Envelope, Source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """A message decoded into a command, with the identity the inbox knows it by, and the
    span of applying it (ended once its poll is committed)."""

    message: Message
    headers: MessageHeaders
    command: commands.Command
    envelope: Envelope
    span: Span


@dataclass(frozen=True)
class DeadLetter:
    """A message set aside for the DLQ, with what was wrong with it."""

    message: Message
    headers: MessageHeaders
    error_type: str
    error_message: str

    @classmethod
    def of(cls, item: Inbound, fault: Fault) -> DeadLetter:
        return cls(item.message, item.headers, fault.name, fault.reason)

    def outgoing(self, dlq_topic: str) -> Outgoing:
        """The letter as sent: the original key and bytes, with the contract's DLQ headers."""
        message = self.message
        logger.warning(
            "dead-lettering %s[%s]@%s: %s: %s",
            *(message.topic(), message.partition(), message.offset()),
            *(self.error_type, self.error_message),
        )
        headers = dead_letter_headers(message, self.headers, self.error_type, self.error_message)
        return Outgoing(dlq_topic, message.key(), message.value(), headers)


class Decoder:
    """Decodes the messages of the command topics (``records``: topic -> record name)."""

    def __init__(self, codec: AvroCodec, records: Mapping[str, str]) -> None:
        self._codec = codec
        self._decoders: dict[str, Callable[[Mapping[str, Any]], commands.Command]] = {
            topic: COMMAND_DECODERS[name] for topic, name in records.items()
        }

    @property
    def topics(self) -> list[str]:
        return list(self._decoders)

    def decode(self, message: Message) -> Inbound | DeadLetter:
        """The command in ``message``, or why it can never be one.

        Registry outages are raised (``RegistryUnavailable``): the caller retries.
        """
        topic = str(message.topic())
        headers = message_headers(message)  # once: see message_headers
        try:
            command = self._decoders[topic](self._codec.decode(topic, message.value()))
            # The limits, checked at the edge: a value over one never reaches the database.
            check_command(command)
            span = tracing.start_process(
                topic,
                header(headers, contract.TRACEPARENT),
                {
                    "messaging.kafka.offset": message.offset() or 0,
                    "messaging.destination.partition.id": str(message.partition()),
                },
            )
            envelope = Envelope(
                message_identity(message, headers),
                aliases=(legacy_identity(message, headers),),
                correlation_id=header(headers, contract.CORRELATION_ID),
                traceparent=tracing.traceparent_of(span),
                source=Source(topic, message.partition() or 0, message.offset() or 0),
            )
        except (PoisonMessage, DomainError) as exc:
            fault = classify(exc)
            return DeadLetter(message, headers, fault.name, fault.reason)
        except (KeyError, TypeError, ValueError) as exc:
            return DeadLetter(message, headers, "InvalidRecord", f"{type(exc).__name__}: {exc}")
        return Inbound(message, headers, command, envelope, span)
