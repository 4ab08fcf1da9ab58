"""Avro in the Confluent wire format, with schemas from the registry.

Wire format: magic byte 0, the writer schema's id (4 bytes, big endian), then
the Avro body. Decoding reads with the writer schema the registry names and
resolves it to the topic's own schema (``allocation/schemas/*.avsc``), so a record written
with an older compatible schema still decodes. Only the ids registered under the
topic's own subject are read: the registry checked those against the subject's
compatibility level; any other id is poison. The decode is bounded (see
``avro_bounds``): a record over ``MAX_RECORD_BYTES`` or a writer schema with an
array of zero-byte items is poison before fastavro reads it.

Errors are split by what the caller must do: a ``PoisonMessage`` can never
decode (dead-letter it); ``RegistryUnavailable`` may clear (retry).
"""

from __future__ import annotations

import io
import json
import logging
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import fastavro
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro.read import SchemaResolutionError

from allocation.adapters.avro_bounds import MAX_RECORD_BYTES, unbounded_array
from allocation.adapters.avro_errors import (
    InvalidRecord,
    OversizeRecord,
    PoisonMessage,
    SchemaNotInSubject,
    UnboundedSchema,
    UndecodableMessage,
    UnknownSchemaId,
    WrongRecordType,
    registry_failure,
)
from allocation.adapters.avro_errors import RegistryTransportError as RegistryTransportError
from allocation.adapters.avro_errors import registry_client as registry_client
from allocation.adapters.avro_writer import BodyWriter, compile_writer
from allocation.adapters.contract import Schema, subject
from allocation.adapters.wire import Record

__all__ = [
    "AvroCodec",
    "InvalidRecord",
    "OversizeRecord",
    "PoisonMessage",
    "RegistryTransportError",
    "SchemaNotInSubject",
    "UnboundedSchema",
    "UndecodableMessage",
    "UnknownSchemaId",
    "WrongRecordType",
    "registry_client",
]


T = TypeVar("T")
_HEADER = struct.Struct(">bI")
# How long a writer trusts "this build's schema is not registered" before asking again.
_UNREGISTERED_TTL_S = 60.0
# How long a reader trusts "this id is under other subjects only" (an id can be added to one).
_FOREIGN_ID_TTL_S = 60.0

logger = logging.getLogger(__name__)


class AvroCodec:
    """Encodes and decodes the records of the contract's topics."""

    def __init__(self, registry: SchemaRegistryClient, schemas: Mapping[str, Schema]) -> None:
        """``schemas``: the reader/writer schema of each topic, as shipped in the package."""
        self._registry = registry
        self._schemas = {topic: _parse(s) for topic, s in schemas.items()}
        self._write = {topic: compile_writer(s) for topic, s in self._schemas.items()}
        self._raw = dict(schemas)
        # A writer schema, or why it cannot be one: asked of the registry once per id.
        self._writers: dict[int, Schema | PoisonMessage] = {}
        self._ids: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._unregistered: dict[str, float] = {}
        self._by_version: dict[tuple[str, int], tuple[int, BodyWriter]] = {}
        # Per topic, the ids known to be versions of its subject; a miss asks the
        # registry again (a version registered since is accepted), a hit does not.
        self._in_subject: dict[str, set[int]] = {}
        # (topic, id) found under other subjects only, until when that answer is trusted.
        self._foreign: dict[tuple[str, int], tuple[float, str]] = {}

    def decode(self, topic: str, data: bytes | None) -> Record:
        """The record in ``data``, read as ``topic``'s schema; PoisonMessage if it cannot be."""
        reader = self._schemas.get(topic)
        if reader is None:
            raise WrongRecordType(f"topic {topic} carries no known record type")
        if data is None or len(data) < _HEADER.size:
            raise UndecodableMessage(
                f"{len(data or b'')} bytes: too short for the Confluent wire format"
            )
        if len(data) > MAX_RECORD_BYTES:
            raise OversizeRecord(
                f"{len(data)} bytes: over the {MAX_RECORD_BYTES}-byte limit of a command"
            )
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != 0:
            raise UndecodableMessage(f"magic byte {magic}, expected 0 (Confluent wire format)")
        self._require_in_subject(topic, schema_id)
        writer = self._writer_schema(schema_id)
        if writer["name"] != reader["name"]:
            raise WrongRecordType(
                f"schema id {schema_id} is {writer['name']}, topic {topic} carries {reader['name']}"
            )
        body = io.BytesIO(data)
        body.seek(_HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, writer, reader)
        except SchemaResolutionError as exc:
            raise InvalidRecord(f"{writer['name']} (schema id {schema_id}): {exc}") from exc
        except Exception as exc:  # fastavro raises many types on bad bytes
            raise UndecodableMessage(
                f"Avro body does not decode: {type(exc).__name__}: {exc}"
            ) from exc
        if body.tell() != len(data):
            raise UndecodableMessage(f"{len(data) - body.tell()} bytes after the Avro record")
        if not isinstance(record, dict):
            raise WrongRecordType(f"decoded a {type(record).__name__}, not a record")
        return record

    def encode(self, topic: str, record: Mapping[str, Any]) -> bytes:
        """``record`` in the Confluent wire format, with the id of ``topic``'s schema."""
        return _HEADER.pack(0, self.schema_id(topic)) + self._write[topic](record)

    def encode_as(self, topic: str, record: Mapping[str, Any], version: int | None) -> bytes:
        """``record`` written with version ``version`` of the topic's subject, with its id.

        An outbox row names the version its writer built the record for: encoding
        with that one sends an old row as it was written, whatever build relays it,
        and a field the old version lacks is left out. None (a row written before
        rows named their version, or by a writer that found no registered version)
        encodes with this build's schema; a field the row lacks takes its default.
        """
        if version is None:
            return self.encode(topic, record)
        schema_id, write = self._registered_version(topic, version)
        return _HEADER.pack(0, schema_id) + write(record)

    def version_of(self, topic: str) -> int | None:
        """The subject's version holding this build's schema of ``topic``; None if none does.

        What an outbox writer stores with each row (see ``encode_as``). Registering is
        a deploy step (``allocation prepare``); a build whose schema is not registered
        yet writes None, and its rows go out with the relay's own schema.
        """
        if topic in self._versions:
            return self._versions[topic]
        if time.monotonic() < self._unregistered.get(topic, 0.0):
            return None
        try:
            self.schema_id(topic)
        except LookupError:
            logger.warning("schema of %s is not registered; outbox rows name no version", topic)
            self._unregistered[topic] = time.monotonic() + _UNREGISTERED_TTL_S
            return None
        return self._versions[topic]

    def _registered_version(self, topic: str, version: int) -> tuple[int, BodyWriter]:
        found = self._by_version.get((topic, version))
        if found is not None:
            return found
        name = subject(topic)
        registered = _ask(
            lambda: self._registry.get_version(name, version),
            LookupError(f"version {version} of {name} is not in the registry"),
        )
        if registered.schema_id is None or registered.schema is None:
            raise LookupError(f"the registry gave no schema for version {version} of {name}")
        writer = _parse(json.loads(registered.schema.schema_str or "null"))
        found = (registered.schema_id, compile_writer(writer))
        self._by_version[(topic, version)] = found
        return found

    def schema_id(self, topic: str) -> int:
        """The registry's id of this topic's schema (under subject ``<topic>-value``)."""
        if topic not in self._ids:
            if topic not in self._raw:  # an outbox row of a topic renamed since, say
                raise LookupError(
                    f"no schema for topic {topic!r}: this process's topics are"
                    f" {', '.join(sorted(self._raw))} (its TOPIC_* settings)"
                )
            name = subject(topic)
            ours = RegistrySchema(json.dumps(self._raw[topic]), "AVRO")
            registered = _ask(
                lambda: self._registry.lookup_schema(name, ours),
                LookupError(
                    f"schema for {name} is not registered (run `allocation schemas register`)"
                ),
            )
            if registered.schema_id is None:
                raise LookupError(f"the registry gave no id for {name}")
            self._ids[topic] = registered.schema_id
            self._in_subject.setdefault(topic, set()).add(registered.schema_id)
            if registered.version is not None:
                self._versions[topic] = int(registered.version)
        return self._ids[topic]

    def _require_in_subject(self, topic: str, schema_id: int) -> None:
        if schema_id in self._in_subject.get(topic, ()):
            return
        name = subject(topic)
        until, elsewhere = self._foreign.get((topic, schema_id), (0.0, ""))
        if time.monotonic() >= until:
            found = _ask(
                lambda: self._registry.get_schema_versions(schema_id),
                UnknownSchemaId(f"schema id {schema_id} is unknown to the registry"),
            )
            if any(v.subject == name for v in found):
                self._in_subject.setdefault(topic, set()).add(schema_id)
                return
            elsewhere = ", ".join(sorted({str(v.subject) for v in found})) or "no subject"
            self._foreign[(topic, schema_id)] = (time.monotonic() + _FOREIGN_ID_TTL_S, elsewhere)
        raise SchemaNotInSubject(
            f"schema id {schema_id} is not a version of {name} (it is registered under "
            f"{elsewhere}); the registry never checked it against {name}'s compatibility"
        )

    def _writer_schema(self, schema_id: int) -> Schema:
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer(schema_id)
        if isinstance(writer, PoisonMessage):
            raise type(writer)(str(writer))
        return writer

    def _fetch_writer(self, schema_id: int) -> Schema | PoisonMessage:
        found = _ask(
            lambda: self._registry.get_schema(schema_id),
            UnknownSchemaId(f"schema id {schema_id} is unknown to the registry"),
        )
        if found.schema_type not in (None, "AVRO"):
            return WrongRecordType(f"schema id {schema_id} is {found.schema_type}, not Avro")
        try:
            writer = _parse(json.loads(found.schema_str or "null"))
        except Exception:
            return WrongRecordType(f"schema id {schema_id} is not a usable Avro record")
        if writer.get("type") != "record":
            return WrongRecordType(f"schema id {schema_id} is not an Avro record")
        unbounded = unbounded_array(writer)
        if unbounded is not None:
            return UnboundedSchema(
                f"schema id {schema_id}: array {unbounded} holds items of zero bytes, so a "
                "record could make its decode run unbounded"
            )
        return writer


def _ask(call: Callable[[], T], refused: Exception) -> T:
    """The registry's answer to ``call``. A registry that cannot answer raises what
    ``registry_failure`` makes of it (retry); a "no" about the thing asked for raises
    ``refused``, the caller's reading of that no."""
    try:
        return call()
    except Exception as exc:
        raise (registry_failure(exc) or refused) from exc


def _parse(schema: Any) -> Schema:
    parsed = fastavro.parse_schema(schema)
    if not isinstance(parsed, dict):
        raise TypeError("an Avro record schema is a JSON object")
    return parsed
