"""One classifier names every failure's kind, with the exceptions the drivers really raise."""

from __future__ import annotations

import psycopg2
import pytest
from confluent_kafka import KafkaError, KafkaException
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc

from allocation.adapters import faults
from allocation.adapters.avro import UndecodableMessage
from allocation.domain.errors import InvalidQuantity
from allocation.service_layer.unit_of_work import ConcurrencyConflict

STATEMENT = "INSERT INTO allocations_view (orderid, sku, batchref) VALUES (%(orderid)s, ...)"
PARAMETERS = {"orderid": "secret-order", "sku": "secret-sku"}


def as_sqlalchemy(code: str, message: str = "the driver's message") -> sa_exc.DBAPIError:
    """A psycopg2 error of this SQLSTATE, wrapped as SQLAlchemy wraps it."""
    original = pg_errors.lookup(code)(f"{message}\nDETAIL:  more lines")
    wrapped = sa_exc.DBAPIError.instance(STATEMENT, PARAMETERS, original, psycopg2.Error)
    assert isinstance(wrapped, sa_exc.DBAPIError)
    return wrapped


def kind(exc: BaseException) -> str:
    return str(faults.classify(exc).kind.value)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("54000", "poison"),  # index row too big: an OperationalError in psycopg2
        ("22001", "poison"),  # string too long
        ("22003", "poison"),  # numeric value out of range
        ("40001", "transient"),
        ("40P01", "transient"),
        ("55P03", "transient"),
        ("25006", "transient"),  # read-only transaction after a failover
        ("53300", "transient"),  # too many connections
        ("53100", "transient"),  # disk full
        ("57P01", "transient"),  # admin shutdown
        ("57P02", "transient"),
        ("57P03", "transient"),
        ("08006", "transient"),
        ("42P01", "systemic"),  # undefined table
        ("42703", "systemic"),  # undefined column
        ("42501", "systemic"),  # insufficient privilege
        ("3D000", "systemic"),  # no such database
        ("28P01", "systemic"),  # bad password
        ("28000", "systemic"),
        ("23503", "unknown"),
    ],
)
def test_a_database_error_is_classified_by_its_sqlstate(code: str, expected: str) -> None:
    assert kind(as_sqlalchemy(code)) == expected
    assert kind(pg_errors.lookup(code)("plain psycopg2, as the relay's lock connection")) == (
        expected
    )


def test_the_sqlstate_decides_not_the_exception_class() -> None:
    too_big = as_sqlalchemy("54000", "index row size 3080 exceeds btree version 4 maximum 2704")
    assert isinstance(too_big, sa_exc.OperationalError)
    assert not faults.is_transient(too_big)
    assert faults.is_transient(as_sqlalchemy("25006"))


def test_a_poison_reason_keeps_the_sqlstate_and_the_first_line_but_no_sql() -> None:
    fault = faults.classify(as_sqlalchemy("54000", "index row size 3080 exceeds btree maximum"))
    assert fault.name == "ProgramLimitExceeded"
    assert fault.reason == "SQLSTATE 54000: index row size 3080 exceeds btree maximum"
    assert "[SQL" not in fault.reason
    assert "secret" not in fault.reason


def test_a_lost_connection_without_sqlstate_is_transient() -> None:
    lost = sa_exc.OperationalError(
        STATEMENT, PARAMETERS, psycopg2.OperationalError("server closed the connection")
    )
    assert kind(lost) == "transient"
    assert kind(psycopg2.OperationalError("could not connect to server")) == "transient"
    assert kind(psycopg2.InterfaceError("connection already closed")) == "transient"
    refused = psycopg2.OperationalError('FATAL:  password authentication failed for user "x"')
    assert kind(refused) == "systemic"


def test_pool_exhaustion_and_conflicts_are_transient() -> None:
    assert kind(sa_exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached")) == (
        "transient"
    )
    assert kind(ConcurrencyConflict("version changed")) == "transient"
    assert kind(faults.RegistryUnavailable("registry down")) == "transient"


def test_a_messages_own_fault_is_poison_with_its_error_type() -> None:
    fault = faults.classify(UndecodableMessage("3 bytes: too short"))
    assert (fault.kind.value, fault.name, fault.reason) == (
        "poison",
        "UndecodableMessage",
        "3 bytes: too short",
    )
    assert faults.classify(InvalidQuantity("qty must be positive")).name == "InvalidQuantity"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (KafkaError._MSG_TIMED_OUT, "transient"),  # a delivery report after a broker outage
        (KafkaError._TRANSPORT, "transient"),
        (KafkaError._ALL_BROKERS_DOWN, "transient"),
        (KafkaError.NOT_ENOUGH_REPLICAS, "transient"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "systemic"),
        (KafkaError._UNKNOWN_TOPIC, "systemic"),
        (KafkaError.MSG_SIZE_TOO_LARGE, "unknown"),
    ],
)
def test_a_kafka_error_is_classified_by_its_code(code: int, expected: str) -> None:
    assert kind(KafkaException(KafkaError(code))) == expected


def test_an_unknown_error_on_one_message_is_its_poison() -> None:
    streak = faults.Streak()
    verdict = streak.judge(faults.classify(RuntimeError("boom")), "id:a")
    assert verdict.kind is faults.Kind.POISON
    assert verdict.reason == "unexpected error: boom"


def test_the_same_unknown_error_on_consecutive_different_messages_is_systemic() -> None:
    streak = faults.Streak()
    streak.judge(faults.classify(RuntimeError("boom")), "id:a")
    assert streak.judge(faults.classify(RuntimeError("boom")), "id:b").kind is faults.Kind.SYSTEMIC


def test_a_success_or_another_error_ends_the_streak() -> None:
    streak = faults.Streak()
    streak.judge(faults.classify(RuntimeError("boom")), "id:a")
    streak.success()
    assert streak.judge(faults.classify(RuntimeError("boom")), "id:b").kind is faults.Kind.POISON
    assert streak.judge(faults.classify(KeyError("other")), "id:c").kind is faults.Kind.POISON
    # The same message failing again (a retry) is no evidence against the system.
    assert streak.judge(faults.classify(KeyError("other")), "id:c").kind is faults.Kind.POISON
