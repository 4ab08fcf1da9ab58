"""Poison input goes to the dead-letter queue with its reason; the loop goes on."""

from __future__ import annotations

import json
import struct

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from sqlalchemy import Engine

from allocation.adapters.avro import AvroCodec
from allocation.config import Settings
from testkit.processes import Service, wait_for_batches
from testkit.raw_headers import produce_with_raw_header
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku

DLQ_HEADERS = {
    "error_type",
    "error_message",
    "source_topic",
    "source_partition",
    "source_offset",
    "failed_at",
}


LONG = "\U0001d11e" * 64  # 64 characters, 256 bytes of UTF-8


def wire(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


@pytest.fixture
def allocate_without_qty(registry: SchemaRegistryClient, e2e_settings: Settings) -> int:
    """The id of an Allocate schema lacking ``qty``, registered under a scratch subject.

    The registry never checked it against the allocate topic's subject, so the
    consumer must not read it as an Allocate (it once did, by record name alone).
    """
    schema = {
        "type": "record",
        "name": "Allocate",
        "namespace": "io.allocation.commands",
        "fields": [{"name": "orderid", "type": "string"}, {"name": "sku", "type": "string"}],
    }
    subject = f"{e2e_settings.consumer_group}-scratch-value"
    return registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))


def test_every_kind_of_poison_is_dead_lettered_and_a_valid_command_behind_it_applied(
    e2e_settings: Settings,
    engine: Engine,
    codec: AvroCodec,
    allocate_without_qty: int,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
    dead_letters: DecodingReader,
) -> None:
    s = e2e_settings
    sku, ref = random_sku(), random_batchref()
    sender.create_batch(s.topic_add_batch, ref, sku, 100)
    wait_for_batches(engine, [ref])

    allocate_id = codec.schema_id(s.topic_allocate)
    valid_body = codec.encode(s.topic_allocate, {"orderid": "o", "sku": sku, "qty": 1})[5:]
    allocated_bytes = codec.encode(
        s.topic_line_allocated, {"orderid": "o", "sku": sku, "qty": 1, "batchref": ref}
    )
    without_qty = wire(allocate_without_qty, b"\x02o" + bytes([len(sku) * 2]) + sku.encode())
    raw_cases: dict[str, tuple[bytes | None, str]] = {
        "garbage": (b"this is not avro", "UndecodableMessage"),
        "too-short": (b"\x00\x00", "UndecodableMessage"),
        "no-value": (None, "UndecodableMessage"),
        "bad-magic": (b"\x01" + wire(allocate_id, valid_body)[1:], "UndecodableMessage"),
        "unknown-schema-id": (wire(987_654_321, valid_body), "UnknownSchemaId"),
        "wrong-record": (allocated_bytes, "SchemaNotInSubject"),
        "foreign-subject": (without_qty, "SchemaNotInSubject"),
        "truncated": (wire(allocate_id, valid_body[:-3]), "UndecodableMessage"),
        "trailing-bytes": (wire(allocate_id, valid_body + b"\x00\x00"), "UndecodableMessage"),
    }
    for case, (value, _) in raw_cases.items():
        sender.send_raw(s.topic_allocate, value, sku, headers=[("case", case.encode())])
    topics = {case: s.topic_allocate for case in raw_cases}
    expected = {case: kind for case, (_, kind) in raw_cases.items()}
    o = {"orderid": "o", "sku": sku}
    record_cases: list[tuple[str, str, dict[str, object], str]] = [
        ("negative-qty", s.topic_allocate, {**o, "qty": -1}, "InvalidQuantity"),
        ("zero-qty", s.topic_allocate, {**o, "qty": 0}, "InvalidQuantity"),
        ("empty-orderid", s.topic_allocate, {**o, "orderid": "", "qty": 1}, "InvalidValue"),
        # Business rejections (an unknown sku, a reused reference) are no poison: they become
        # CommandRejected events (tests/e2e/test_rejections.py), never dead letters.
        ("empty-sku", s.topic_add_batch, {"ref": ref + "x", "sku": "", "qty": 5}, "InvalidValue"),
        # 64 characters of 4 bytes: within 255 characters, over 255 bytes. Applied, the
        # pair below made an index row PostgreSQL refuses (54000) and stalled the consumer.
        (
            "oversize-identifiers",
            s.topic_add_batch,
            {"ref": LONG, "sku": LONG, "qty": 5},
            "InvalidValue",
        ),
        (
            "oversize-orderid",
            s.topic_allocate,
            {"orderid": LONG, "sku": LONG, "qty": 1},
            "InvalidValue",
        ),
    ]
    for case, topic, record, kind in record_cases:
        sender.send(topic, record, sku, headers=[("case", case.encode())])
        topics[case], expected[case] = topic, kind
    long_correlation = [("case", b"long-correlation-id"), ("correlation_id", b"c" * 513)]
    sender.send(s.topic_allocate, {**o, "qty": 1}, sku, headers=long_correlation)
    topics["long-correlation-id"] = s.topic_allocate
    expected["long-correlation-id"] = "InvalidValue"
    orderid = random_orderid()
    sender.send(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 7}, sku)
    sender.flush()

    def ours(got: list[Decoded]) -> dict[str, Decoded]:
        return {r.headers["case"]: r for r in got if r.key == sku and "case" in r.headers}

    by_case = ours(dead_letters.read_until(lambda got: len(ours(got)) >= len(expected), 60))
    assert {case: letter.headers["error_type"] for case, letter in by_case.items()} == expected
    for case, letter in by_case.items():
        assert set(letter.headers) >= DLQ_HEADERS, case
        assert letter.headers["error_message"], case
        assert letter.headers["source_topic"] == topics[case]
        assert int(letter.headers["source_offset"]) >= 0
        assert letter.key == sku
    for case, (value, _) in raw_cases.items():
        assert by_case[case].raw == value, f"{case}: the original bytes must be kept"

    def allocated(got: list[Decoded]) -> bool:
        return any(r.value and r.value.get("orderid") == orderid for r in got)

    received = events.read_until(allocated, timeout=60)
    fields = ("orderid", "sku", "qty", "batchref")
    assert [
        {name: r.value[name] for name in fields}
        for r in received
        if r.value and r.value.get("orderid") == orderid
    ] == [{"orderid": orderid, "sku": sku, "qty": 7, "batchref": ref}]
    assert services["consumer"].running


def test_a_header_that_is_not_utf8_is_treated_as_absent_and_the_consumer_goes_on(
    e2e_settings: Settings,
    engine: Engine,
    codec: AvroCodec,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
) -> None:
    s = e2e_settings
    sku, ref = random_sku(), random_batchref()
    sender.create_batch(s.topic_add_batch, ref, sku, 100)
    wait_for_batches(engine, [ref])
    hostile, after = random_orderid("hostile"), random_orderid("after")
    # confluent-kafka raises converting this header; the record itself is valid.
    produce_with_raw_header(
        s.kafka_bootstrap_servers,
        s.topic_allocate,
        sku.encode(),
        codec.encode(s.topic_allocate, {"orderid": hostile, "sku": sku, "qty": 1}),
        name=b"\xff\xfecorrelation_id",
        header=b"\xfe\xff",
    )
    sender.send(s.topic_allocate, {"orderid": after, "sku": sku, "qty": 2}, sku)
    sender.flush()

    def orders(got: list[Decoded]) -> set[str]:
        return {str(r.value["orderid"]) for r in got if r.value and r.value.get("sku") == sku}

    received = events.read_until(lambda got: {hostile, after} <= orders(got), timeout=60)
    assert {hostile, after} <= orders(received)
    assert services["consumer"].running
