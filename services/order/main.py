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
    # Its per-hop updates of order_sagas kept generic plans made while the table was
    # nearly empty: sequential scans of every saga, 28 a second under load (see
    # create_engine). Planned for their parameters, they use the primary key; measured
    # back to back at 256 in flight, PostgreSQL's CPU per saga went 1.32-1.36 to 1.21-1.23 ms.
    custom_plans=True,
)

build, app, main = SERVICE.build, SERVICE.app, SERVICE.main
