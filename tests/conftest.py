"""Session-wide fixtures: the real PostgreSQL and RabbitMQ the environment names
(defaults: 127.0.0.1:5432 user postgres, 127.0.0.1:5672 guest/guest), with a vhost and
databases of the tests' own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import Broker, provisioned, rabbit_vhost

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
PG_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A vhost made for this test module (deleted afterwards), so that no two modules'
    consumers, nor a running `make dev`, ever share a queue; with the system's broker users
    of this module's own provisioned on it (`broker.url("payment")`, ...)."""
    with rabbit_vhost(AMQP_URL, MANAGEMENT_URL) as url, provisioned(url, MANAGEMENT_URL) as made:
        yield made


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return PG_SERVER_URL


@pytest.fixture(scope="session")
def management_url() -> str:
    return MANAGEMENT_URL
