"""Composition root of the fare service: `python -m services.fare`."""

from pathlib import Path

from saga_log.runtime import ServiceDefinition
from services.fare import api, deadlines, subscribers, tables
from services.fare.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="fare",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
    routes=api.routes,
    background=[deadlines.watch_deadlines],
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
