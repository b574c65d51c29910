"""Composition root of the saga history: `python -m saga_log.recorder`."""

from collections.abc import Sequence
from pathlib import Path

from contracts import consumer
from saga_log.consumer import Subscription
from saga_log.faults import Faults
from saga_log.recorder import api, handlers, tables
from saga_log.recorder.config import Settings
from saga_log.service import ServiceDefinition

MIGRATIONS = Path(__file__).parent / "migrations"


def subscriptions(faults: Faults) -> Sequence[Subscription]:
    return [
        Subscription(
            consumer("saga_log", "record"),
            handlers.record_event,
            batch_handler=handlers.record_events,
        )
    ]


SERVICE = ServiceDefinition(
    name="saga_log",
    description="The saga history: records every event on saga.events and derives each "
    "saga's state for people (web page, API, CLI). It publishes nothing.",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscriptions,
    routes=api.routes,
)

build, app, docs_app, main = SERVICE.build, SERVICE.app, SERVICE.docs_app, SERVICE.main
