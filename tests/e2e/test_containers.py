"""Both sagas against PostgreSQL and RabbitMQ in real containers started by the tests
(testcontainers): the happy path and a compensation path of each.

Needs a Docker engine; without one the tests are skipped and the reason is printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from contracts import FARE
from contracts.samples import fresh_fare_id, fresh_order_id, sample_fare, sample_order
from saga_log.ops.client import SagaWatcher
from tests.e2e.test_fare_scenarios import assert_fare_end_state
from tests.e2e.test_scenarios import assert_end_state
from tests.support import SERVICES, Stack, make_stack, provisioned

pytestmark = pytest.mark.docker


def docker_engine_problem() -> str | None:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine: {exc}"
    if result.returncode != 0:
        return f"no Docker engine answers `docker info`: {result.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def container_stack() -> Iterator[Stack]:
    problem = docker_engine_problem()
    if problem:
        pytest.skip(problem)
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer

    # Context managers, not a reaper: the containers go when the module's tests are done.
    try:
        postgres = PostgresContainer("postgres:17", driver=None)
        rabbit = RabbitMqContainer("rabbitmq:4-management").with_exposed_ports(15672)
        with postgres, rabbit:
            host = rabbit.get_container_host_ip()
            admin_url = (
                f"amqp://{rabbit.username}:{rabbit.password}@"
                f"{host}:{rabbit.get_exposed_port(5672)}/"
            )
            management_url = f"http://{host}:{rabbit.get_exposed_port(15672)}"
            with provisioned(admin_url, management_url) as broker:
                stack = make_stack(broker, postgres.get_connection_url(), faults="seed")
                yield from _started(stack)
    except Exception as exc:  # the images or the engine failed us, not the code under test
        if "docker" in type(exc).__module__ or "ContainerStartException" in type(exc).__name__:
            pytest.fail(f"the test containers could not start: {exc}")
        raise


def _started(stack: Stack) -> Iterator[Stack]:
    try:
        for service in SERVICES:
            stack.start(service, timeout=120)
        yield stack
    finally:
        stack.stop_all()


@pytest.mark.parametrize("scenario", ["ok", "3"])
async def test_saga_in_containers_ends_as_the_sample_does(
    container_stack: Stack, scenario: str
) -> None:
    async with SagaWatcher(container_stack.amqp_url) as watcher:
        order_id = fresh_order_id(scenario)
        await watcher.place(sample_order(scenario, order_id=order_id))
        events = await watcher.wait(order_id, timeout=60)
        await assert_end_state(container_stack, scenario, order_id, events)


@pytest.mark.parametrize("scenario", ["ok", "fail_credit"])
async def test_fare_in_containers_ends_as_the_lab_does(
    container_stack: Stack, scenario: str
) -> None:
    async with SagaWatcher(container_stack.amqp_url) as watcher:
        fare_id = fresh_fare_id()
        await watcher.start(FARE, sample_fare(scenario, fare_id=fare_id))
        events = await watcher.wait(fare_id, timeout=60)
        await assert_fare_end_state(container_stack, scenario, fare_id, events)
