"""Composition root of the order service: `python -m services.order`."""

from pathlib import Path

from saga_log.runtime import ServiceDefinition
from services.order import api, deadlines, subscribers, tables
from services.order.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="order",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
    routes=api.routes,
    background=[deadlines.watch_deadlines],
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
