"""Composition root of the saga history: `python -m saga_log.recorder`."""

from pathlib import Path

from contracts import consumer
from saga_log.recorder import api, handlers, tables
from saga_log.recorder.config import Settings
from saga_log.runtime import RuntimeSettings, ServiceDefinition, Subscription

MIGRATIONS = Path(__file__).parent / "migrations"


def subscriptions(settings: RuntimeSettings) -> list[Subscription]:
    return [Subscription(consumer("saga_log", "record"), handlers.record_event)]


SERVICE = ServiceDefinition(
    name="saga_log",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscriptions,
    routes=api.routes,
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
