"""Business rejections reach their senders as CommandRejected events; the DLQ keeps poison only."""

from __future__ import annotations

import json

from sqlalchemy import Engine

from allocation.config import Settings
from testkit.processes import Service, wait_for_batches
from testkit.traffic import CommandSender, Decoded, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku


def test_rejected_commands_become_command_rejected_events_and_none_is_dead_lettered(
    e2e_settings: Settings,
    engine: Engine,
    services: dict[str, Service],
    sender: CommandSender,
    events: DecodingReader,
    dead_letters: DecodingReader,
) -> None:
    s = e2e_settings
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    unknown_sku, unknown_ref = random_sku("unknown"), random_batchref("unknown")
    sender.create_batch(s.topic_add_batch, ref, sku, 10)
    wait_for_batches(engine, [ref])
    sender.send(s.topic_batch_quantity, {"batchref": ref, "qty": 8, "expected_version": 1}, ref)
    cases = {
        "unknown-sku": (s.topic_allocate, {"orderid": orderid, "sku": unknown_sku, "qty": 1}),
        "duplicate-batch": (s.topic_add_batch, {"ref": ref, "sku": sku, "qty": 5, "eta": None}),
        "unknown-batch": (s.topic_batch_quantity, {"batchref": unknown_ref, "qty": 1}),
        # The change above moved the batch to version 2: this one expected the old version.
        "stale-version": (
            s.topic_batch_quantity,
            {"batchref": ref, "qty": 3, "expected_version": 1},
        ),
    }
    keys = {"unknown-sku": unknown_sku, "duplicate-batch": sku, "unknown-batch": unknown_ref}
    keys["stale-version"] = ref
    for case, (topic, record) in cases.items():
        headers = [("message_id", f"{case}-{orderid}".encode()), ("correlation_id", b"corr")]
        sender.send(topic, record, keys[case], headers=headers)
    # Poison behind each rejection, on its partition (same topic, same key): once these are
    # dead-lettered, any dead letter of the commands before them would be there too.
    for case, (topic, _) in cases.items():
        sender.send_raw(topic, b"not avro", keys[case], headers=[("sentinel", case.encode())])
    sender.flush()

    def rejections(got: list[Decoded]) -> dict[str, Decoded]:
        return {
            # The causation is the command's inbox identity, id:<topic>:<message_id>.
            str(r.value["causation_id"]).rsplit(":", 1)[-1].removesuffix(f"-{orderid}"): r
            for r in got
            if r.topic == s.topic_command_rejected
            and r.value
            and str(r.value["causation_id"]).endswith(orderid)
        }

    received = rejections(events.read_until(lambda got: len(rejections(got)) == 4, 60))
    assert {case: r.value["reason"] for case, r in received.items() if r.value} == {
        "unknown-sku": "InvalidSku",
        "duplicate-batch": "DuplicateBatchRef",
        "unknown-batch": "InvalidBatchRef",
        "stale-version": "StaleVersion",
    }
    for case, event in received.items():
        value = event.value
        assert value is not None
        topic, record = cases[case]
        assert event.key == value["key"] == keys[case], case
        assert (
            value["command_type"]
            == {
                s.topic_allocate: "Allocate",
                s.topic_add_batch: "CreateBatch",
                s.topic_batch_quantity: "ChangeBatchQuantity",
            }[topic]
        )
        assert value["message"], case
        assert value["correlation_id"] == "corr"
        assert value["source_topic"] == topic
        assert value["source_partition"] >= 0
        assert value["source_offset"] >= 0
        assert value["event_id"] == event.headers["event_id"]
        assert event.headers["event_type"] == "CommandRejected"
        assert json.loads(value["command"])["qty"] == record["qty"]
    stale = received["stale-version"].value
    assert stale is not None
    assert (stale["sku"], stale["current_version"]) == (sku, 2)
    assert received["unknown-batch"].value
    assert received["unknown-batch"].value["sku"] is None

    def sentinels(got: list[Decoded]) -> set[str]:
        return {r.headers["sentinel"] for r in got if "sentinel" in r.headers}

    # The session's DLQ also holds other tests' sentinels: wait for all of ours among them.
    letters = dead_letters.read_until(lambda got: set(cases) <= sentinels(got), 60)
    ours = [r for r in letters if r.key in keys.values()]
    assert all("sentinel" in r.headers for r in ours), [r.headers for r in ours]
    assert services["consumer"].running
