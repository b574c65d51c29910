from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from saga_log.client import SagaWatcher
from tests.support import Stack, drop_databases, make_stack


@pytest.fixture(scope="module")
def stack(amqp_url: str, pg_server_url: str) -> Iterator[Stack]:
    """The three services as separate processes, with the sample's faults on."""
    stack = make_stack(amqp_url, pg_server_url, faults="seed")
    try:
        for service in ("order", "payment", "inventory", "saga_log"):
            stack.start(service)
        yield stack
    finally:
        stack.stop_all()
        asyncio.run(
            drop_databases(
                pg_server_url, [url.rsplit("/", 1)[1] for url in stack.database_urls.values()]
            )
        )


@pytest.fixture
async def watcher(stack: Stack) -> AsyncIterator[SagaWatcher]:
    async with SagaWatcher(stack.amqp_url) as watcher:
        yield watcher
