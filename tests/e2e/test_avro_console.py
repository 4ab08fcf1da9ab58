"""Kafka's console tools with the Avro serde (stack/bin/kafka-avro-console-*) drive the service."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from allocation.config import Settings
from testkit.processes import Service, wait_for_batches
from tests.conftest import random_batchref, random_orderid, random_sku

BIN = Path(__file__).resolve().parents[2] / "stack" / "bin"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The first run on a machine fetches the tools' jars with Maven and compiles two classes; later
# runs start a JVM per tool, slow on a loaded 2-core machine.
TOOL_TIMEOUT = 300
pytestmark = pytest.mark.timeout(2 * TOOL_TIMEOUT)


def tool_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    env["SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    return env


def produce(
    settings: Settings, topic: str, lines: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kafka-avro-console-producer"), "--topic", topic, *args],
        input="".join(f"{line}\n" for line in lines),
        env=tool_env(settings),
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )


def produce_keyed(settings: Settings, topic: str, key: str, record: dict[str, object]) -> None:
    done = produce(
        settings,
        topic,
        [f"{key}:{json.dumps(record)}"],
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=:",
    )
    assert done.returncode == 0, done.stderr


def consume_until(
    settings: Settings, topic: str, wanted: Callable[[str], bool], count: int = 1
) -> list[str]:
    """Runs the Avro console consumer from the beginning until it printed ``count`` wanted lines."""
    command = [str(BIN / "kafka-avro-console-consumer"), "--topic", topic, "--from-beginning"]
    command += ["--property", "print.key=true", "--property", "print.headers=true"]
    # stderr to a file: an unread pipe could fill up with broker warnings and stall the tool.
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            command, env=tool_env(settings), stdout=subprocess.PIPE, stderr=errors, text=True
        )
        found = []
        try:
            for line in lines_of(process, TOOL_TIMEOUT + 90):
                found += [line] if wanted(line) else []
                if len(found) == count:
                    return found
        finally:
            process.terminate()
            process.wait(30)
        errors.seek(0)
        raise AssertionError(f"{len(found)} of {count} wanted lines on {topic}: {errors.read()}")


def lines_of(process: subprocess.Popen[str], timeout: float) -> Iterator[str]:
    """The process's stdout lines as they come, until it closes; AssertionError after timeout.

    A thread reads, because a select() on the pipe would not see lines already buffered.
    """
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"timed out after {timeout:.0f}s reading the console consumer"
            ) from None
        if line is None:
            return
        yield line


def fields(line: str) -> tuple[dict[str, str], str, dict[str, object]]:
    """headers, key, value of a line printed with print.headers=true and print.key=true."""
    headers_text, key, value = line.split("\t", 2)
    headers = dict(item.split(":", 1) for item in headers_text.split(",") if ":" in item)
    return headers, key, json.loads(value)


def test_an_allocate_typed_into_the_producer_is_applied_and_its_allocated_printed(
    e2e_settings: Settings, engine: Engine, services: dict[str, Service]
) -> None:
    s = e2e_settings
    sku, ref, orderid = random_sku("console"), random_batchref("console"), random_orderid()
    produce_keyed(
        s, s.topic_add_batch, sku, {"ref": ref, "sku": sku, "qty": 10, "eta": "2026-12-01"}
    )
    wait_for_batches(engine, [ref])
    produce_keyed(s, s.topic_allocate, sku, {"orderid": orderid, "sku": sku, "qty": 3})

    (line,) = consume_until(s, s.topic_line_allocated, lambda line: f'"{orderid}"' in line)
    headers, key, value = fields(line)
    assert key == sku
    line_fields = {name: value[name] for name in ("orderid", "sku", "qty", "batchref")}
    assert line_fields == {"orderid": orderid, "sku": sku, "qty": 3, "batchref": ref}
    assert value["product_version"] >= 1  # the envelope rides in the value too (issue 15)
    assert headers["event_type"] == "Allocated"

    # The typed command carried a message_id, the identity the service acted on (its inbox key
    # and the event's causation), and dates print as dates, not day numbers.
    (command_line,) = consume_until(s, s.topic_allocate, lambda line: f'"{orderid}"' in line)
    message_id = fields(command_line)[0]["message_id"]
    assert UUID.fullmatch(message_id)
    assert headers["causation_id"].endswith(message_id)
    (batch_line,) = consume_until(s, s.topic_add_batch, lambda line: f'"{ref}"' in line)
    assert fields(batch_line)[2]["eta"] == "2026-12-01"


@pytest.mark.parametrize(("mode", "same"), [("content", True), ("random", False)])
def test_message_id_content_gives_a_line_sent_twice_one_identity_for_the_inbox(
    e2e_settings: Settings, mode: str, same: bool
) -> None:
    s = e2e_settings
    sku, ref = random_sku("twice"), random_batchref("twice")
    line = f"{sku}:" + json.dumps({"ref": ref, "sku": sku, "qty": 1})
    for _ in range(2):
        done = produce(
            s,
            s.topic_add_batch,
            [line],
            *("--property", "parse.key=true", "--property", "key.separator=:"),
            *("--property", f"message.id={mode}"),
        )
        assert done.returncode == 0, done.stderr
    sent = consume_until(s, s.topic_add_batch, lambda line: f'"{ref}"' in line, count=2)
    ids = [fields(line)[0]["message_id"] for line in sent]
    assert all(UUID.fullmatch(i) for i in ids)
    assert (ids[0] == ids[1]) is same


@pytest.mark.parametrize(
    ("line", "args", "reason"),
    [
        ('{"orderid": "o-1", "sku": "LAMP", "qty": "ten"}', [], 'field "qty": expected an int'),
        ('{"orderid": "o-1", "qty": 1}', [], 'field "sku": missing'),
        ('{"orderid": "o-1", "sku": "LAMP", "qty": 1, "x": 1}', [], 'field "x": not a field'),
        ("not json", [], "not JSON"),
        ('{"orderid": "o-1", "sku": "LAMP", "qty": 1}', ["value.schema.id=987654"], "987654"),
    ],
)
def test_the_producer_refuses_a_record_that_does_not_fit_with_one_clear_line(
    e2e_settings: Settings, line: str, args: list[str], reason: str
) -> None:
    properties = [arg for prop in args for arg in ("--property", prop)]
    done = produce(e2e_settings, e2e_settings.topic_allocate, [line], *properties)
    assert done.returncode == 1
    assert reason in done.stderr
    assert "Exception" not in done.stderr, done.stderr
    assert "\tat " not in done.stderr, done.stderr
