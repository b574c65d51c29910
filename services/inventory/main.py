"""Composition root of the inventory service: `python -m services.inventory`."""

from pathlib import Path

from saga_log.runtime import ServiceDefinition
from services.inventory import subscribers, tables
from services.inventory.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="inventory",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
