"""Which failures clear by themselves: one test, shared by every process that retries."""

from __future__ import annotations

import psycopg2
from confluent_kafka import KafkaException
from sqlalchemy import exc as sa_exc

from allocation.service_layer.unit_of_work import ConcurrencyConflict


class TransientFault(Exception):
    """A fault of the moment (a server away, an acknowledgement missing): retry after a pause."""


class RegistryUnavailable(TransientFault):
    """The schema registry could not be asked; the same call may succeed later."""


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or went away: wait and try again."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    # The relay's leader connection is plain psycopg2, outside SQLAlchemy.
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """Faults that clear by themselves: retry them, never dead-letter them."""
    if isinstance(exc, TransientFault | ConcurrencyConflict):
        return True
    if isinstance(exc, KafkaException):
        return bool(exc.args and exc.args[0].retriable())
    return database_unavailable(exc)
