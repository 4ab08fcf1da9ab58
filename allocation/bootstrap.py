"""The composition root: the only place that builds engines and wires dependencies.

Nothing in the package connects to anything at import time; an entrypoint calls
``bootstrap(settings)`` and closes what it gets back when it stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from allocation.adapters import orm
from allocation.adapters.database import SqlAlchemyUnitOfWork, make_engine, session_factory
from allocation.config import Settings
from allocation.domain import events
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, EventRoutes


def event_routes(settings: Settings) -> EventRoutes:
    """The topic each integration event is published to."""
    return {
        events.Allocated: settings.topic_line_allocated,
        events.Deallocated: settings.topic_line_deallocated,
        events.OutOfStock: settings.topic_out_of_stock,
    }


@dataclass
class Application:
    """What an entrypoint needs: the bus, fresh units of work for reads, and a way to close."""

    settings: Settings
    bus: MessageBus
    uow_factory: Callable[[], AbstractUnitOfWork]
    engine: Engine | None = field(default=None)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def bootstrap(
    settings: Settings,
    uow_factory: Callable[[], AbstractUnitOfWork] | None = None,
) -> Application:
    """Wire the service; with no ``uow_factory``, units of work run on PostgreSQL."""
    engine = None
    if uow_factory is None:
        orm.start_mappers()
        engine = make_engine(settings.sqlalchemy_url)
        sessions = session_factory(engine)
        routes = event_routes(settings)

        def sql_uow() -> AbstractUnitOfWork:
            return SqlAlchemyUnitOfWork(sessions, routes)

        uow_factory = sql_uow

    bus = MessageBus(uow_factory, COMMAND_HANDLERS, EVENT_HANDLERS, settings.max_attempts)
    return Application(settings=settings, bus=bus, uow_factory=uow_factory, engine=engine)
