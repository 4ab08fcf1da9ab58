"""asyncapi.yaml and the code agree on topics, records, directions, keys and headers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

# The code's topic catalogue: the one import to repoint when it moves.
from allocation.adapters.contract import topic_records
from allocation.adapters.kafka import dead_letter_headers
from allocation.config import Settings

ROOT = Path(__file__).resolve().parents[2]
AVRO = "application/vnd.apache.avro;version=1.9.0"
# The contract's default names, built without reading the caller's environment.
CONTRACT = Settings.model_construct()


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    return document


DOC = load_document()


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def deref(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"])
    return node


def channels_by_address(planned: bool) -> dict[str, dict[str, Any]]:
    return {
        channel["address"]: channel
        for channel in DOC["channels"].values()
        if (channel.get("x-status") == "planned") is planned
    }


def the_message(channel: dict[str, Any]) -> dict[str, Any]:
    messages = list(channel["messages"].values())
    assert len(messages) == 1, channel["address"]
    message: dict[str, Any] = deref(messages[0])
    return message


def operations_on(address: str) -> list[dict[str, Any]]:
    return [op for op in DOC["operations"].values() if deref(op["channel"])["address"] == address]


def readme_topic_table() -> dict[str, tuple[str, str, str]]:
    """topic -> (record, key, direction) from the README's table of topics."""
    rows = re.findall(
        r"^\| `([a-z-]+)` \| (.+?) \| (.+?) \| (in|out) \|$", (ROOT / "README.md").read_text(), re.M
    )
    return {topic: (record, key, direction) for topic, record, key, direction in rows}


def expected_direction(topic: str) -> str:
    return "receive" if topic in CONTRACT.command_topics else "send"


def test_every_topic_of_the_code_is_a_channel_and_no_channel_is_unknown_to_it() -> None:
    code_topics = {*topic_records(CONTRACT), CONTRACT.topic_dlq}
    assert set(channels_by_address(planned=False)) == code_topics


def test_planned_channels_are_not_in_the_code_yet_and_have_no_operation() -> None:
    code_topics = {*topic_records(CONTRACT), CONTRACT.topic_dlq}
    for address in channels_by_address(planned=True):
        assert address not in code_topics, f"{address} exists now: drop its x-status: planned"
        assert operations_on(address) == []


@pytest.mark.parametrize(("topic", "record"), sorted(topic_records(CONTRACT).items()))
def test_each_topic_carries_its_record_with_its_avro_schema_file(topic: str, record: str) -> None:
    message = the_message(channels_by_address(planned=False)[topic])
    assert message["name"] == record
    payload = message["payload"]
    assert payload["schemaFormat"] == AVRO
    assert payload["schema"] == {"$ref": f"./schemas/{record}.avsc"}
    schema = json.loads((ROOT / "schemas" / f"{record}.avsc").read_text())
    assert schema["name"] == record
    assert message["x-key-field"] in {field["name"] for field in schema["fields"]}
    binding = deref(message["bindings"])["kafka"]
    assert binding["schemaIdPayloadEncoding"] == "confluent"
    assert binding["key"]["type"] == "string"


@pytest.mark.parametrize("topic", sorted({*topic_records(CONTRACT), CONTRACT.topic_dlq}))
def test_each_topic_has_one_operation_in_the_services_direction(topic: str) -> None:
    actions = [op["action"] for op in operations_on(topic)]
    assert actions == [expected_direction(topic)]


def test_keys_and_directions_match_the_readmes_topic_table() -> None:
    table = readme_topic_table()
    channels = channels_by_address(planned=False)
    assert set(table) == set(channels)
    for topic, (_, key, direction) in table.items():
        assert the_message(channels[topic])["x-key-field"] == key
        assert expected_direction(topic) == {"in": "receive", "out": "send"}[direction]


def test_event_messages_declare_the_contracts_event_headers() -> None:
    for topic in CONTRACT.event_topics:
        headers = deref(the_message(channels_by_address(planned=False)[topic])["headers"])
        assert set(headers["required"]) == {"event_id", "event_type", "occurred_at", "causation_id"}
        assert {"correlation_id", "traceparent"} <= set(headers["properties"])


class _Message:
    """Just what dead_letter_headers reads of a consumed message."""

    def topic(self) -> str:
        return "allocate"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def headers(self) -> list[tuple[str, bytes]]:
        return []


def test_the_dead_letter_headers_are_the_ones_the_code_writes() -> None:
    letter = dead_letter_headers(_Message(), [], "InvalidSku", "no such sku")
    written = {name for name, _ in letter}
    dlq = the_message(channels_by_address(planned=False)[CONTRACT.topic_dlq])
    assert set(deref(dlq["headers"])["required"]) == written
