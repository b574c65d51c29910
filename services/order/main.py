"""Composition root of the order service: `python -m services.order`."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from starlette.applications import Starlette

from saga_log import Faults, ServiceRuntime
from saga_log.docs import asyncapi_app
from saga_log.service import serve
from services.order import api, deadlines, subscribers, tables
from services.order.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: Settings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    return ServiceRuntime(
        name="order",
        settings=settings,
        database_url=settings.database_url,
        http_port=settings.http_port,
        metadata=tables.metadata,
        migrations=MIGRATIONS,
        subscriptions=subscribers.subscriptions(settings.fault_plan()),
        routes=api.routes,
        background=[deadlines.watch_deadlines],
    )


def app() -> Starlette:
    """The ASGI application (a uvicorn factory: built when the server starts)."""
    return build().asgi()


def docs_app() -> FastStream:
    """What this service reads and publishes, for `python -m saga_log.docs`."""
    return asyncapi_app(
        "order",
        description=subscribers.DESCRIPTION,
        consumers=[s.consumer for s in subscribers.subscriptions(Faults())],
        publishes=subscribers.PUBLISHES,
    )


def main() -> None:
    settings = Settings()
    serve("services.order.main:app", settings, port=settings.http_port)
