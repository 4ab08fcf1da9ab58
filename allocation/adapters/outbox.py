"""The outbox in PostgreSQL: integration events stored with the change that raised them.

This module writes the rows; ``outbox_publishing`` is how the relay reads and marks them,
``outbox_operations`` what operators and retention see and do with them.

Rows of one key must become visible in the order their ids were taken, or a
relay publishing by id could put a key's events out of commit order. Each
writing transaction therefore takes a transaction-scoped advisory lock per key
(sorted, so two writers cannot deadlock) before it takes ids: a second writer of
the same key waits until the first commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import write
from allocation.adapters.prepared import Prepared
from allocation.adapters.wire import event_to_record
from allocation.service_layer.ports import AbstractOutbox, OutboxEntry

_LOCK_KEYS = Prepared(
    "allocation_outbox_lock_keys",
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
    "FROM (SELECT DISTINCT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS keys",
)


# One statement for any number of rows; WITH ORDINALITY keeps ids in the order raised.
_INSERT = Prepared(
    "allocation_outbox_insert",
    """
    INSERT INTO outbox (event_id, event_type, topic, key, payload, occurred_at,
                        causation_id, correlation_id, traceparent, schema_version)
    SELECT event_id, event_type, topic, key, payload, occurred_at, causation_id, correlation_id,
           traceparent, schema_version
    FROM unnest(CAST(:event_ids AS uuid[]), CAST(:types AS text[]), CAST(:topics AS text[]),
                CAST(:keys AS text[]), CAST(:payloads AS jsonb[]),
                CAST(:occurred AS timestamptz[]), CAST(:causes AS text[]),
                CAST(:correlations AS text[]), CAST(:traceparents AS text[]),
                CAST(:versions AS integer[]))
         WITH ORDINALITY AS rows (event_id, event_type, topic, key, payload, occurred_at,
                                  causation_id, correlation_id, traceparent, schema_version,
                                  position)
    ORDER BY position
    """,
    types={"event_ids": "text[]", "payloads": "text[]"},
)


SchemaVersions = Callable[[str], int | None]
"""The registry's version of this build's schema of a topic (``AvroCodec.version_of``)."""


class SqlOutbox(AbstractOutbox):
    """Outbox rows written with one INSERT per unit of work, after the per-key locks.

    Each row names the schema version its payload was written for (``versions``;
    without it, or when the registry holds no version of this build's schema,
    NULL: "the relay's own"), so the relay of another build encodes it as written.
    """

    def __init__(self, session: Session, versions: SchemaVersions | None = None) -> None:
        self._session = session
        self._versions = versions

    def add(self, entries: list[OutboxEntry]) -> None:
        if not entries:
            return
        keys = sorted({entry.key for entry in entries})
        write(self._session, _LOCK_KEYS, {"keys": keys})
        write(
            self._session,
            _INSERT,
            {
                "event_ids": [str(e.event_id) for e in entries],
                "types": [e.event_type for e in entries],
                "topics": [e.topic for e in entries],
                "keys": [e.key for e in entries],
                "payloads": [json.dumps(event_to_record(e.event)) for e in entries],
                "occurred": [e.occurred_at for e in entries],
                "causes": [e.causation_id for e in entries],
                "correlations": [e.correlation_id for e in entries],
                "traceparents": [e.traceparent for e in entries],
                "versions": [self._versions(e.topic) if self._versions else None for e in entries],
            },
        )
