"""The wire contract in one place: which record each topic carries, its schema, its subject,
and the names of the headers the service reads and writes.

Schemas ship inside the package (``allocation/schemas/*.avsc``; the top-level
``schemas/`` is a link to that folder) and are read with ``importlib.resources``,
so an installed wheel finds them as an editable checkout does.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from allocation.config import Settings

Schema = dict[str, Any]
"""An Avro schema as parsed JSON."""

COMMAND_RECORDS = ("CreateBatch", "Allocate", "ChangeBatchQuantity")
EVENT_RECORDS = ("Allocated", "Deallocated", "OutOfStock", "CommandRejected")

# Headers the service reads on a command.
MESSAGE_ID = "message_id"
CORRELATION_ID = "correlation_id"

# Headers the relay writes on every event.
EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
OCCURRED_AT = "occurred_at"
CAUSATION_ID = "causation_id"
# W3C trace context, read on a command and written on an event.
TRACEPARENT = "traceparent"

# Headers the consumer adds to a dead letter, after the original ones.
ERROR_TYPE = "error_type"
ERROR_MESSAGE = "error_message"
SOURCE_TOPIC = "source_topic"
SOURCE_PARTITION = "source_partition"
SOURCE_OFFSET = "source_offset"
FAILED_AT = "failed_at"
# Added to a dead letter sent back to its topic: how many times it has been replayed.
REPLAY_COUNT = "replay_count"
DLQ_HEADERS = (ERROR_TYPE, ERROR_MESSAGE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, FAILED_AT)


def topic_records(settings: Settings) -> dict[str, str]:
    """The record each topic carries (its schema is ``schemas/<record>.avsc``)."""
    return {
        settings.topic_add_batch: "CreateBatch",
        settings.topic_allocate: "Allocate",
        settings.topic_batch_quantity: "ChangeBatchQuantity",
        settings.topic_line_allocated: "Allocated",
        settings.topic_line_deallocated: "Deallocated",
        settings.topic_out_of_stock: "OutOfStock",
        settings.topic_command_rejected: "CommandRejected",
    }


def key_field(record_name: str) -> str:
    """The record field a message of this record is keyed by."""
    if record_name == "ChangeBatchQuantity":
        return "batchref"
    return "key" if record_name == "CommandRejected" else "sku"


def compatibility_levels(settings: Settings) -> dict[str, str]:
    """Each topic's compatibility: what its readers need (see adapters/schemas.py)."""
    levels = dict.fromkeys(settings.command_topics, "BACKWARD_TRANSITIVE")
    levels.update(dict.fromkeys(settings.event_topics, "FULL_TRANSITIVE"))
    return levels


def subject(topic: str) -> str:
    """The registry subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"


def load_schema(record_name: str) -> Schema:
    """The schema of one record, as shipped in the package."""
    text = resources.files("allocation.schemas").joinpath(f"{record_name}.avsc").read_text()
    schema: Schema = json.loads(text)
    return schema


def topic_schemas(settings: Settings) -> dict[str, Schema]:
    """Each topic's schema, keyed by topic."""
    return {topic: load_schema(name) for topic, name in topic_records(settings).items()}
