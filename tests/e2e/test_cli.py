"""The ``allocation`` command as a user runs it: produce, consume, dead letters, status, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from sqlalchemy import Engine

from allocation.adapters.contract import REPLAY_COUNT, SOURCE_TOPIC
from allocation.bootstrap import avro_codec
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import Service, free_port, service_env, wait_for_batches, wait_until
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku, random_suffix

REPO = Path(__file__).resolve().parents[2]


LINE_FIELDS = ("orderid", "sku", "qty", "batchref")


def own_fields(value: object) -> dict[str, object]:
    """A line event's own fields, without the envelope its value also carries."""
    assert isinstance(value, dict)
    return {name: value[name] for name in LINE_FIELDS}


def allocation(
    settings: Settings, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allocation.entrypoints.cli", *args],
        env=service_env(settings, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_produce_then_watch_the_event_with_both_consumers(
    e2e_settings: Settings, engine: Engine, services: dict[str, Service]
) -> None:
    s = e2e_settings
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    made = allocation(s, "produce", s.topic_add_batch, "--ref", ref, "--sku", sku, "--qty", "9")
    assert made.returncode == 0, made.stderr
    assert json_lines(made.stdout)[0]["key"] == sku
    wait_for_batches(engine, [ref])

    body = json.dumps({"orderid": orderid, "sku": sku, "qty": 4})
    sent = allocation(s, "produce", s.topic_allocate, "--json", body, "--correlation-id", "c-9")
    assert sent.returncode == 0, sent.stderr

    watched = allocation(
        s, "consume", s.topic_line_allocated, "--from-beginning", "--timeout", "5", "--max", "500"
    )
    mine = [r for r in json_lines(watched.stdout) if r["key"] == sku]
    assert len(mine) == 1
    assert own_fields(mine[0]["value"]) == {
        "orderid": orderid,
        "sku": sku,
        "qty": 4,
        "batchref": ref,
    }
    headers = mine[0]["headers"]
    assert isinstance(headers, dict)
    assert mine[0]["value"]["event_id"] == headers["event_id"]  # printed with the envelope
    assert headers["correlation_id"] == "c-9"
    assert {"topic", "partition", "offset", "key", "headers"} <= set(mine[0])

    console = subprocess.run(
        [
            str(REPO / "stack/bin/kafka-console-consumer"),
            "--bootstrap-server",
            s.kafka_bootstrap_servers,
            "--topic",
            s.topic_line_allocated,
            "--from-beginning",
            "--property",
            "print.key=true",
            "--timeout-ms",
            "10000",
        ],
        capture_output=True,
        timeout=60,
    )
    assert sku.encode() in console.stdout


def test_a_command_sent_again_with_its_message_id_is_applied_once(
    e2e_settings: Settings, engine: Engine, services: dict[str, Service]
) -> None:
    """What a user does after `produce` timed out: the same again, with the id it printed."""
    s = e2e_settings
    sku, ref = random_sku("again"), random_batchref()
    made = allocation(s, "produce", s.topic_add_batch, "--ref", ref, "--sku", sku, "--qty", "10")
    assert made.returncode == 0, made.stderr
    wait_for_batches(engine, [ref])
    orderids = [random_orderid(n) for n in range(3)]
    retried, later = f"try-{random_suffix()}", f"try-{random_suffix()}"
    # The second reuses the first's id: the inbox takes it for a copy, whatever it holds.
    for orderid, message_id in zip(orderids, [retried, retried, later], strict=True):
        flags = ["--orderid", orderid, "--sku", sku, "--qty", "1", "--message-id", message_id]
        sent = allocation(s, "produce", s.topic_allocate, *flags)
        assert sent.returncode == 0, sent.stderr
        assert json_lines(sent.stdout)[0]["message_id"] == message_id

    reader = DecodingReader(s, avro_codec(s), [s.topic_line_allocated])
    try:
        # One key, one partition: the third is applied after the second was looked at.
        events = reader.read_until(
            lambda seen: any(e.value and e.value["orderid"] == orderids[2] for e in seen), 60
        )
    finally:
        reader.close()
    allocated = {e.value["orderid"] for e in events if e.value and e.key == sku}
    assert allocated == {orderids[0], orderids[2]}


def test_a_dead_letter_is_listed_and_can_be_replayed(
    e2e_settings: Settings, engine: Engine, services: dict[str, Service]
) -> None:
    s = e2e_settings
    sku, ref, orderid = random_sku(), random_batchref(), random_orderid()
    # A letter as a release before CommandRejected dead-lettered an early Allocate (this one
    # would send a CommandRejected): the tools must still list and replay it.
    codec = avro_codec(s)
    sender = CommandSender(s, codec)
    letter_headers = {
        "error_type": "InvalidSku",
        "error_message": f"Invalid sku {sku}",
        SOURCE_TOPIC: s.topic_allocate,
        "source_partition": "0",
        "source_offset": "0",
        "failed_at": "2026-01-01T00:00:00+00:00",
    }
    sender.send_raw(
        s.topic_dlq,
        codec.encode(s.topic_allocate, {"orderid": orderid, "sku": sku, "qty": 2}),
        sku,
        headers=[(name, value.encode()) for name, value in letter_headers.items()],
    )
    sender.flush()

    def listed() -> list[dict[str, object]]:
        out = allocation(s, "dlq", "list", "--timeout", "3").stdout
        return [r for r in json_lines(out) if r["key"] == sku]

    letters: list[dict[str, object]] = []
    for _ in range(20):
        letters = listed()
        if letters:
            break
    assert len(letters) == 1
    letter = letters[0]
    headers = letter["headers"]
    assert isinstance(headers, dict)
    assert headers["error_type"] == "InvalidSku"
    assert letter["value"] == {"orderid": orderid, "sku": sku, "qty": 2}

    allocation(s, "produce", s.topic_add_batch, "--ref", ref, "--sku", sku, "--qty", "5")
    wait_for_batches(engine, [ref])
    replayed = allocation(s, "dlq", "replay", "--at", f"{letter['partition']}:{letter['offset']}")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letter" in replayed.stderr

    watched = allocation(
        s, "consume", s.topic_line_allocated, "--from-beginning", "--timeout", "5", "--max", "1000"
    )
    assert [own_fields(r["value"]) for r in json_lines(watched.stdout) if r["key"] == sku] == [
        {"orderid": orderid, "sku": sku, "qty": 2, "batchref": ref}
    ]


def test_status_shows_lag_backlog_and_dead_letters(
    e2e_settings: Settings, services: dict[str, Service]
) -> None:
    shown = allocation(e2e_settings, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"consumer group {e2e_settings.consumer_group}" in shown.stdout
    assert e2e_settings.topic_allocate in shown.stdout
    assert "total lag" in shown.stdout
    assert "outbox:" in shown.stdout
    assert "relay leader:" in shown.stdout


def test_user_errors_are_one_line_without_a_traceback(e2e_settings: Settings) -> None:
    s = e2e_settings
    cases = [
        allocation(s, "produce", "no-such-topic", "--sku", "x"),
        allocation(s, "produce", s.topic_allocate, "--sku", "x", "--qty", "1"),
        allocation(s, "produce", s.topic_allocate, "--orderid", "o", "--sku", "x", "--qty", "0"),
        allocation(s, "produce", s.topic_allocate, "--json", "{not json"),
        allocation(
            s,
            "db",
            "upgrade",
            DATABASE_URL="postgresql://allocation:x@127.0.0.1:1/nope",
            MIGRATION_DATABASE_URL="postgresql://allocation_owner:x@127.0.0.1:1/nope",
        ),
        allocation(
            s, "schemas", "register", SCHEMA_REGISTRY_URL="http://127.0.0.1:1/apis/ccompat/v7"
        ),
        allocation(s, "status", TOPIC_PARTITIONS="zero"),
    ]
    for result in cases:
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, result.stderr


def test_replaying_every_dead_letter_ends_even_when_they_fail_again(
    e2e_settings: Settings, log_dir: Path
) -> None:
    """A replayed letter that is poison again is dead-lettered again: the replay must not
    read it back and feed itself, and must refuse letters that came from an event topic."""
    s = e2e_settings.with_prefix(f"replay-{random_suffix()}", topic_partitions=1)
    create_contract_topics(s)
    register_contract_schemas(s)
    consumer = Service(["consumer"], service_env(s), log_dir, "replay-consumer").start()
    codec = avro_codec(s)
    sender = CommandSender(s, codec)
    try:
        sender.send_raw(s.topic_allocate, b"not avro at all", "poison")
        sender.send_raw(s.topic_dlq, b"an event", "stray", [(SOURCE_TOPIC, s.topic_line_allocated)])
        sender.flush()
        dead = DecodingReader(s, avro_codec(s), [s.topic_dlq])
        dead.read_until(lambda got: len(got) == 2, timeout=60)

        replayed = allocation(s, "dlq", "replay", "--all", "--timeout", "60")
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 1 dead letter" in replayed.stderr
        assert "not a command topic" in replayed.stderr

        letters = dead.read_until(lambda got: len(got) == 3, timeout=60)
        assert letters[2].headers[REPLAY_COUNT] == "1"
        assert letters[2].raw == b"not avro at all"
        dead.close()
    finally:
        assert consumer.terminate() == 0
        drop_topics(s)


def test_the_version_is_printed(e2e_settings: Settings) -> None:
    shown = allocation(e2e_settings, "--version")
    assert shown.returncode == 0, shown.stderr
    assert re.fullmatch(r"allocation \d+\.\d+\.\d+\S*\n", shown.stdout), shown.stdout


def test_produce_reads_json_lines_from_stdin_all_or_nothing(e2e_settings: Settings) -> None:
    s = e2e_settings
    sku = random_sku("bulk")
    good = [json.dumps({"ref": random_batchref(n), "sku": sku, "qty": n + 1}) for n in range(3)]
    bad = json.dumps({"ref": random_batchref("bad"), "sku": sku, "qty": -1})

    refused = allocation(s, "produce", s.topic_add_batch, "-", stdin="\n".join([*good, bad]))
    assert refused.returncode == 1
    assert "line 4" in refused.stderr
    assert "nothing was sent" in refused.stderr
    assert "Traceback" not in refused.stderr

    sent = allocation(
        s, "produce", s.topic_add_batch, "-", "--message-id", sku, stdin="\n".join(good) + "\n\n"
    )
    assert sent.returncode == 0, sent.stderr
    assert [r["key"] for r in json_lines(sent.stdout)] == [sku] * 3
    assert [r["message_id"] for r in json_lines(sent.stdout)] == [f"{sku}-{n}" for n in (1, 2, 3)]
    watched = allocation(s, "consume", s.topic_add_batch, "--from-beginning", "--timeout", "5")
    assert sorted(r["value"]["qty"] for r in json_lines(watched.stdout) if r["key"] == sku) == [
        1,
        2,
        3,
    ]


def test_ctrl_c_on_run_stops_every_process_without_a_traceback(
    e2e_settings: Settings, log_dir: Path
) -> None:
    s = e2e_settings.with_prefix(f"run-{random_suffix()}")
    env = service_env(
        s,
        API_PORT=str(free_port()),
        CONSUMER_METRICS_PORT=str(free_port()),
        RELAY_METRICS_PORT=str(free_port()),
    )
    output = log_dir / "run.log"
    with output.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "allocation.entrypoints.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        api = f"http://127.0.0.1:{env['API_PORT']}/readyz"
        wait_until(lambda: _answers(api), 120, "the API of `allocation run` to answer")
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C does: the whole group gets SIGINT
        code = run.wait(60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        drop_topics(s)
    text = output.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "CancelledError" not in text


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
