"""Composition root of the inventory service: `python -m services.inventory`."""

from pathlib import Path

from saga_log.service import ServiceDefinition
from services.inventory import subscribers, tables
from services.inventory.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="inventory",
    description=subscribers.DESCRIPTION,
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
    publishes=subscribers.PUBLISHES,
)

build, app, docs_app, main = SERVICE.build, SERVICE.app, SERVICE.docs_app, SERVICE.main
