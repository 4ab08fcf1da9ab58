"""Why a record cannot be read, and what a registry failure means for the caller.

A ``PoisonMessage`` can never decode (dead-letter it); ``RegistryUnavailable``
may clear (retry); ``AccessDenied`` is the operator's to fix (stop).
"""

from __future__ import annotations

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from allocation.adapters.faults import MessageFault, RegistryUnavailable
from allocation.adapters.security import AccessDenied, registry_client_config
from allocation.config import Settings

try:  # the HTTP library the registry client itself uses (httpx2, or httpx before it)
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _registry_http
except ImportError:  # pragma: no cover (older confluent-kafka)
    import httpx as _registry_http  # type: ignore[no-redef]

RegistryTransportError: type[Exception] = _registry_http.HTTPError
"""Raised by the registry client when it cannot reach the registry at all."""


class PoisonMessage(MessageFault):
    """The bytes of a message can never become a command; ``error_type`` names why."""

    error_type = "PoisonMessage"


class UndecodableMessage(PoisonMessage):
    error_type = "UndecodableMessage"


class UnknownSchemaId(PoisonMessage):
    error_type = "UnknownSchemaId"


class SchemaNotInSubject(PoisonMessage):
    """The schema id is in the registry, but not a version of the topic's subject."""

    error_type = "SchemaNotInSubject"


class OversizeRecord(PoisonMessage):
    error_type = "OversizeRecord"


class UnboundedSchema(PoisonMessage):
    """The writer schema would let a record's decode run unbounded (see ``avro_bounds``)."""

    error_type = "UnboundedSchema"


class WrongRecordType(PoisonMessage):
    error_type = "WrongRecordType"


class InvalidRecord(PoisonMessage):
    """The record's schema cannot be read as the topic's (a field missing, a type changed)."""

    error_type = "InvalidRecord"


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """A client of the schema registry, with the credentials the settings give."""
    return SchemaRegistryClient(registry_client_config(settings))


def _refused(exc: Exception) -> bool:
    # Wrong or missing credentials: not the message's fault, and no retry will help.
    return isinstance(exc, SchemaRegistryError) and exc.http_status_code in (401, 403)


def _registry_refused(exc: Exception) -> AccessDenied:
    status = getattr(exc, "http_status_code", None)
    return AccessDenied(
        f"schema registry refused access (HTTP {status}): check "
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO (not retried)"
    )


def _unavailable(exc: Exception) -> bool:
    if isinstance(exc, RegistryTransportError):
        return True
    return isinstance(exc, SchemaRegistryError) and (exc.http_status_code or 0) >= 500


def registry_failure(exc: Exception) -> Exception | None:
    """What to raise for a registry call that failed with ``exc``; None if the registry
    answered (a 4xx about the thing asked for: the caller decides what that means)."""
    if _unavailable(exc):
        return RegistryUnavailable(f"schema registry: {exc}")
    if _refused(exc):
        return _registry_refused(exc)
    return None
