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
    # Each batch reads its sagas' events from saga_events, which grows with every event,
    # through a non-unique index: a generic plan cached while it was empty scanned it all
    # (PostgreSQL's CPU per saga tripled over a benchmark run). See create_engine.
    custom_plans=True,
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
