"""Composition root of the saga history: `python -m saga_log.recorder`."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream
from starlette.applications import Starlette

from contracts import consumer
from saga_log.consumer import Subscription
from saga_log.docs import asyncapi_app
from saga_log.recorder import api, handlers, tables
from saga_log.recorder.config import Settings
from saga_log.service import ServiceRuntime, serve

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: Settings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    return ServiceRuntime(
        name="saga_log",
        settings=settings,
        database_url=settings.database_url,
        http_port=settings.http_port,
        metadata=tables.metadata,
        migrations=MIGRATIONS,
        subscriptions=[Subscription(consumer("saga_log", "record"), handlers.record_event)],
        routes=api.routes,
    )


def app() -> Starlette:
    """The ASGI application (a uvicorn factory: built when the server starts)."""
    return build().asgi()


def docs_app() -> FastStream:
    """What the saga history reads (everything) and publishes (nothing)."""
    return asyncapi_app(
        "saga_log",
        description="The saga history: records every event on saga.events and derives each "
        "saga's state for people (web page, API, CLI). It publishes nothing.",
        consumers=[consumer("saga_log", "record")],
        publishes=(),
    )


def main() -> None:
    settings = Settings()
    serve("saga_log.recorder.main:app", settings, port=settings.http_port)
