"""Composition root of the payment service: `python -m services.payment`."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from starlette.applications import Starlette

from saga_log import Faults, ServiceRuntime
from saga_log.docs import asyncapi_app
from saga_log.service import serve
from services.payment import subscribers, tables
from services.payment.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: Settings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    return ServiceRuntime(
        name="payment",
        settings=settings,
        database_url=settings.database_url,
        http_port=settings.http_port,
        metadata=tables.metadata,
        migrations=MIGRATIONS,
        subscriptions=subscribers.subscriptions(settings.fault_plan()),
    )


def app() -> Starlette:
    """The ASGI application (a uvicorn factory: built when the server starts)."""
    return build().asgi()


def docs_app() -> FastStream:
    """What this service reads and publishes, for `python -m saga_log.docs`."""
    return asyncapi_app(
        "payment",
        description=subscribers.DESCRIPTION,
        consumers=[s.consumer for s in subscribers.subscriptions(Faults())],
        publishes=subscribers.PUBLISHES,
    )


def main() -> None:
    settings = Settings()
    serve("services.payment.main:app", settings, port=settings.http_port)
