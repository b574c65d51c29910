"""Composition root of the payment service: `python -m services.payment`."""

from pathlib import Path

from saga_log.runtime import ServiceDefinition
from services.payment import subscribers, tables
from services.payment.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="payment",
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
