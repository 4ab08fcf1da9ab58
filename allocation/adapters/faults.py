"""What kind of failure an exception is: decided here, for every process that handles one.

``classify(exc)`` names the kind by what the failure is, never by where it
happened: a PostgreSQL error by its SQLSTATE (psycopg2 reports 54000, a program
limit, as an ``OperationalError``: the code decides, not the class), a Kafka
error by its code, the rest by type. The README's failure table lists the same
rules.

- POISON: the message's own fault; dead-letter it alone.
- TRANSIENT: a fault of the moment; retry with backoff, never dead-letter.
- SYSTEMIC: the operator's fault (a missing table, a refused permission); stop
  applying, dead-letter nothing, and resume once the same work succeeds.
- UNKNOWN: nothing above; ``Streak`` decides between poison and systemic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import psycopg2
from confluent_kafka import KafkaError, KafkaException
from psycopg2 import errorcodes, errors
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from allocation.adapters.privileges import PRIVILEGE_ADVICE
from allocation.domain.errors import DomainError
from allocation.service_layer.unit_of_work import ConcurrencyConflict


class TransientFault(Exception):
    """A fault of the moment (a server away, an acknowledgement missing): retry after a pause."""


class RegistryUnavailable(TransientFault):
    """The schema registry could not be asked; the same call may succeed later."""


class MessageFault(Exception):
    """The message itself can never be applied (its bytes, its record, a header)."""


class Kind(enum.Enum):
    POISON = "poison"
    TRANSIENT = "transient"
    SYSTEMIC = "systemic"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Fault:
    """A failure's kind, a short name (the DLQ's ``error_type``) and a one-line reason.

    The reason never carries SQL text or parameters: a dead letter must not leak
    what other rows of the statement held.
    """

    kind: Kind
    name: str
    reason: str


# Exact SQLSTATEs first, then classes (the first two characters).
_SQLSTATES = {
    "40001": Kind.TRANSIENT,  # serialization_failure
    "40P01": Kind.TRANSIENT,  # deadlock_detected
    "55P03": Kind.TRANSIENT,  # lock_not_available
    "25006": Kind.TRANSIENT,  # read_only_sql_transaction: a replica just after a failover
    "3D000": Kind.SYSTEMIC,  # invalid_catalog_name: no such database
    "3F000": Kind.SYSTEMIC,  # invalid_schema_name
}
_SQLSTATE_CLASSES = {
    "08": Kind.TRANSIENT,  # connection exception
    "53": Kind.TRANSIENT,  # insufficient resources: disk full, out of memory, connections
    "57": Kind.TRANSIENT,  # operator intervention: admin or crash shutdown, starting up
    "22": Kind.POISON,  # data exception: a value the column cannot hold
    "54": Kind.POISON,  # program limit exceeded: 54000 index row too big, ...
    "28": Kind.SYSTEMIC,  # invalid authorization
    # syntax error or access rule violation: 42P01 undefined table, 42703 undefined
    # column, 42501 insufficient privilege; a schema older than the code, or a bug.
    "42": Kind.SYSTEMIC,
}


def _known(code: str) -> bool:
    try:
        errors.lookup(code)
    except KeyError:
        return False
    return True


# psycopg2's class of each SQLSTATE, inverted: an error raised without a server
# behind it (by a test, say) carries its class but no ``pgcode``.
_SQLSTATE_OF_CLASS = {
    errors.lookup(code): code
    for name, code in vars(errorcodes).items()
    if name.isupper() and isinstance(code, str) and len(code) == 5 and _known(code)
}

# Failures to connect carry no SQLSTATE in psycopg2; these say the setup is wrong.
_SYSTEMIC_CONNECT_ERRORS = ("password authentication failed", "does not exist", "no pg_hba.conf")

_KAFKA_TRANSIENT = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
}
_KAFKA_SYSTEMIC = {
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}


def classify(exc: BaseException) -> Fault:
    """The kind of ``exc``, with the name and one-line reason to report it by."""
    if isinstance(exc, TransientFault | ConcurrencyConflict | StaleDataError):
        return Fault(Kind.TRANSIENT, type(exc).__name__, _first_line(exc))
    if isinstance(exc, MessageFault | DomainError):
        return Fault(Kind.POISON, getattr(exc, "error_type", type(exc).__name__), str(exc))
    if isinstance(exc, KafkaException):
        return _kafka(exc)
    if isinstance(exc, sa_exc.DBAPIError | psycopg2.Error):
        return _database(exc)
    # The connection pool had no connection to give within its timeout.
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return Fault(Kind.TRANSIENT, type(exc).__name__, _first_line(exc))
    return Fault(Kind.UNKNOWN, type(exc).__name__, _first_line(exc))


def is_transient(exc: BaseException) -> bool:
    """Faults that clear by themselves: retry them, never dead-letter them."""
    return classify(exc).kind is Kind.TRANSIENT


def _database(exc: sa_exc.DBAPIError | psycopg2.Error) -> Fault:
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    code = getattr(original, "pgcode", None) or _SQLSTATE_OF_CLASS.get(type(original))
    name = type(original).__name__
    reason = f"{name}: {_first_line(original)}"
    if code:
        reason = f"SQLSTATE {code}: {_first_line(original)}"
        if code == errorcodes.INSUFFICIENT_PRIVILEGE:
            reason = f"{reason}; {PRIVILEGE_ADVICE}"
        kind = _SQLSTATES.get(code) or _SQLSTATE_CLASSES.get(code[:2], Kind.UNKNOWN)
        return Fault(kind, name, reason)
    invalidated = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    if not invalidated and not isinstance(
        original, psycopg2.OperationalError | psycopg2.InterfaceError
    ):
        return Fault(Kind.UNKNOWN, name, reason)
    if any(text in reason for text in _SYSTEMIC_CONNECT_ERRORS):
        return Fault(Kind.SYSTEMIC, name, reason)
    return Fault(Kind.TRANSIENT, name, reason)


def _kafka(exc: KafkaException) -> Fault:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if error is None:
        return Fault(Kind.UNKNOWN, "KafkaException", _first_line(exc))
    reason = f"{error.name()}: {error.str()}"
    if error.retriable() or error.code() in _KAFKA_TRANSIENT:
        return Fault(Kind.TRANSIENT, "KafkaError", reason)
    if error.fatal() or error.code() in _KAFKA_SYSTEMIC:
        return Fault(Kind.SYSTEMIC, "KafkaError", reason)
    return Fault(Kind.UNKNOWN, "KafkaError", reason)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


class Streak:
    """Tells an unknown error of one message from one of the system.

    The same unknown error on two consecutive different messages is the system's
    (systemic): the second one must not be dead-lettered, nor any after it. On one
    message alone it is taken as that message's poison. A success ends a streak.
    """

    def __init__(self) -> None:
        self._last: tuple[str, str] | None = None

    def judge(self, fault: Fault, message: str) -> Fault:
        """The verdict on ``fault``, raised by the message whose identity is ``message``."""
        if fault.kind is not Kind.UNKNOWN:
            return fault
        last, self._last = self._last, (fault.name, message)
        if last is not None and last[0] == fault.name and last[1] != message:
            reason = f"{fault.reason} (the same error on consecutive different messages)"
            return Fault(Kind.SYSTEMIC, fault.name, reason)
        return Fault(Kind.POISON, fault.name, f"unexpected error: {fault.reason}")

    def success(self) -> None:
        """A message was applied: an unknown error after this one starts a new streak."""
        self._last = None
