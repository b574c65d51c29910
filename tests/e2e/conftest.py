from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from saga_log.ops.client import SagaWatcher
from tests.support import Broker, Stack, running_stack


@pytest.fixture(scope="module")
def stack(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    """The three services and the saga history as separate processes, sample faults on."""
    with running_stack(broker, pg_server_url) as stack:
        yield stack


@pytest.fixture
async def watcher(stack: Stack) -> AsyncIterator[SagaWatcher]:
    async with SagaWatcher(stack.amqp_url) as watcher:
        yield watcher
