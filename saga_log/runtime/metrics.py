"""Prometheus metrics of a service process, served on its `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "saga_messages_total",
    "Messages a consumer finished with, by saga type, message type and outcome "
    "(handled, duplicate, retried, parked, dead_lettered).",
    ["service", "queue", "saga", "type", "outcome"],
)
RETRIES = Counter(
    "saga_retries_total", "Deliveries sent to a retry delay queue.", ["service", "queue"]
)
DEAD_LETTERS = Counter(
    "saga_dead_letters_total", "Messages sent to a dead-letter queue.", ["service", "queue"]
)
PARKED = Counter(
    "saga_parked_total", "Messages parked after their retry budget was spent.", ["service", "queue"]
)
HANDLER_SECONDS = Histogram(
    "saga_handler_seconds",
    "Time from delivery to commit of a handled message.",
    ["service", "queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_PUBLISHED = Counter(
    "saga_outbox_published_total", "Outbox rows published and confirmed.", ["service"]
)
OUTBOX_LAG = Gauge(
    "saga_outbox_lag_seconds",
    "Age of the oldest unpublished outbox row (0 when the outbox is drained).",
    ["service"],
)
SAGA_SECONDS = Histogram(
    "saga_duration_seconds",
    "Time from a saga's start to its terminal event, by saga type and outcome.",
    ["service", "saga", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
)
