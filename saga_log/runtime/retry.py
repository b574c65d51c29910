"""The retry policy for infrastructure errors (the sample's Step Functions retrier)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """First retry after `first_delay` seconds, each next ceiling `backoff` times longer,
    capped at `max_delay`, `max_attempts` retries in all; each delay is drawn uniformly
    below its ceiling ("full jitter"), so that a burst of failures does not retry in step.
    """

    first_delay: float = 2.0
    backoff: float = 2.0
    max_attempts: int = 3
    max_delay: float = 8.0

    def ceiling(self, retry: int) -> float:
        """The longest delay before retry number `retry` (1-based)."""
        return float(min(self.max_delay, self.first_delay * self.backoff ** (retry - 1)))

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0, self.ceiling(retry))
