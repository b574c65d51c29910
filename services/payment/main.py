"""Composition root of the payment service: `python -m services.payment`."""

from pathlib import Path

from saga_log.service import ServiceDefinition
from services.payment import subscribers, tables
from services.payment.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE = ServiceDefinition(
    name="payment",
    description=subscribers.DESCRIPTION,
    module=__name__,
    settings=Settings,
    metadata=tables.metadata,
    migrations=MIGRATIONS,
    subscriptions=subscribers.subscriptions,
    publishes=subscribers.PUBLISHES,
)

build, app, docs_app, main = SERVICE.build, SERVICE.app, SERVICE.docs_app, SERVICE.main
