from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from saga_log.ops.client import SagaWatcher
from tests.support import Broker, Stack, running_stack


@pytest.fixture(scope="module")
def stack(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    """The three services and the saga history as separate processes, sample faults on.

    The step timeout is a minute, not the sample's 10 s: some tests hold a service down
    while a browser looks at the waiting saga, which on a loaded two-core machine took
    longer than 10 s, and the deadline watch then ended the saga under them. The
    deadlines have stacks of their own (test_deadlines, test_fare_recovery)."""
    with running_stack(broker, pg_server_url, SAGA_STEP_TIMEOUT="60") as stack:
        yield stack


@pytest.fixture
async def watcher(stack: Stack) -> AsyncIterator[SagaWatcher]:
    async with SagaWatcher(stack.amqp_url) as watcher:
        yield watcher
