"""The saga runtime every service embeds (outbox, relay, inbox, retries, parking,
dead letters) and, in time, the durable history of every saga for people to read."""

from saga_log import logs
from saga_log.consumer import DeliveryHandler, Subscription, one_per_saga
from saga_log.db import UnitOfWork, create_engine, ensure_database
from saga_log.faults import Faults
from saga_log.outbox import OutboxRelay
from saga_log.retry import RetryPolicy
from saga_log.service import ServiceRuntime, declare_topology
from saga_log.settings import RuntimeSettings
from saga_log.tables import add_runtime_tables

__all__ = [
    "DeliveryHandler",
    "Faults",
    "OutboxRelay",
    "RetryPolicy",
    "RuntimeSettings",
    "ServiceRuntime",
    "Subscription",
    "UnitOfWork",
    "add_runtime_tables",
    "create_engine",
    "declare_topology",
    "ensure_database",
    "logs",
    "one_per_saga",
]
