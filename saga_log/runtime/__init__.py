"""The saga runtime every service embeds: the delivery path (decode, inbox, handle, commit,
ack), group commit, retries, parking and dead letters, the unit of work with its outbox and
the relay, retention, settings, metrics and logs, and the service shell that composes them.

This module is its whole public surface: services, the saga history and the tools import
from here, never from its modules. It imports only `contracts` and third-party libraries.
"""

from saga_log.runtime import logs, metrics, tracing
from saga_log.runtime.cancellation import (
    add_cancellation_table,
    cancelled_among,
    mark_cancelled,
    split_cancelled,
)
from saga_log.runtime.conclusion import add_succeeded_table, mark_succeeded, succeeded
from saga_log.runtime.database import async_url, create_engine, ensure_database
from saga_log.runtime.deadlines import (
    DEADLINE_EXCEEDED,
    STEP_TIMED_OUT,
    Cancellation,
    Overdue,
    deadline_watch,
)
from saga_log.runtime.delivery import DeliveryHandler
from saga_log.runtime.fault_plan import FaultPlan
from saga_log.runtime.holding import ATTEMPT_HEADER, Protection
from saga_log.runtime.migrations import (
    create_cancellation_table_v1,
    create_cancellation_table_v2,
    create_runtime_tables_v1,
    create_succeeded_table_v1,
    downgrade_cancellation_table_v2_to_v1,
    drop_runtime_tables_v1,
    run_env,
    upgrade,
    upgrade_cancellation_table_v1_to_v2,
)
from saga_log.runtime.outbox import OutboxRelay
from saga_log.runtime.retry import RetryPolicy
from saga_log.runtime.service import (
    ServiceDefinition,
    ServiceRuntime,
    declare_topology,
    repeatedly,
    subscribe,
)
from saga_log.runtime.settings import RuntimeSettings
from saga_log.runtime.subscription import (
    Batch,
    Delivery,
    Handler,
    Received,
    Subscription,
    one_by_one,
    one_per_saga,
)
from saga_log.runtime.tables import add_runtime_tables
from saga_log.runtime.trust import ORIGIN_HEADER, Trust, Untrusted
from saga_log.runtime.unit_of_work import UndeclaredEvent, UnitOfWork

__all__ = [
    "ATTEMPT_HEADER",
    "DEADLINE_EXCEEDED",
    "ORIGIN_HEADER",
    "STEP_TIMED_OUT",
    "Batch",
    "Cancellation",
    "Delivery",
    "DeliveryHandler",
    "FaultPlan",
    "Handler",
    "OutboxRelay",
    "Overdue",
    "Protection",
    "Received",
    "RetryPolicy",
    "RuntimeSettings",
    "ServiceDefinition",
    "ServiceRuntime",
    "Subscription",
    "Trust",
    "UndeclaredEvent",
    "UnitOfWork",
    "Untrusted",
    "add_cancellation_table",
    "add_runtime_tables",
    "add_succeeded_table",
    "async_url",
    "cancelled_among",
    "create_cancellation_table_v1",
    "create_cancellation_table_v2",
    "create_engine",
    "create_runtime_tables_v1",
    "create_succeeded_table_v1",
    "deadline_watch",
    "declare_topology",
    "downgrade_cancellation_table_v2_to_v1",
    "drop_runtime_tables_v1",
    "ensure_database",
    "logs",
    "mark_cancelled",
    "mark_succeeded",
    "metrics",
    "one_by_one",
    "one_per_saga",
    "repeatedly",
    "run_env",
    "split_cancelled",
    "subscribe",
    "succeeded",
    "tracing",
    "upgrade",
    "upgrade_cancellation_table_v1_to_v2",
]
