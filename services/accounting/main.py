"""Composition root of the accounting service: `python -m services.accounting`."""

from pathlib import Path

from saga_log.runtime import ServiceDefinition
from services.accounting import subscribers, tables
from services.accounting.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="accounting",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
