"""Faults injected on purpose for drills, tests and chaos runs (`SAGA_FAULT_PLAN`):
transient failures, delays and crashes at the dangerous points of the delivery path. The
samples' demo faults (a step that fails for some order ids) are declared with each saga,
in `contracts`."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """A transient failure the fault plan asked for (retried like any infrastructure error)."""


class FaultPlan(BaseModel):
    """Faults beyond the demo prefixes, for tests and chaos runs (`SAGA_FAULT_PLAN`, JSON):

    - `transient`: {"<queue>": N} makes the first N attempts of every message on that work
      queue fail with a transient error (so it is retried, or parked past the budget);
    - `delay`: {"<queue>": seconds or [low, high]} waits that long (or a random time in
      the range) before handling each message, inside its transaction, after the claim
      has taken its saga's lock (others of the saga wait meanwhile);
    - `wait`: {"<queue>": seconds} waits that long before each message's transaction
      begins, holding no lock (a consumer that comes to its message late);
    - `crash`: [{"at": POINT, "queue": "<queue>" or null, "probability": p}] kills the
      process at POINT: `before_commit`, `after_commit` (committed, not yet acked, outbox
      not yet relayed) or `relay_after_publish` (published, not yet stamped).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    transient: dict[str, int] = {}
    delay: dict[str, float | tuple[float, float]] = {}
    wait: dict[str, float] = {}
    crash: list[dict[str, Any]] = []

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        if not text.strip():
            return cls()
        try:
            return cls.model_validate_json(text)
        except ValueError as exc:
            raise ValueError(f"SAGA_FAULT_PLAN is not a valid fault plan: {exc}") from None

    async def before_transaction(self, queue: str) -> None:
        """Called before a message's transaction begins."""
        if seconds := self.wait.get(queue):
            await asyncio.sleep(seconds)

    async def before_handling(self, queue: str, attempt: int) -> None:
        """Called before a handler runs; `attempt` counts retries so far (0 the first time)."""
        if seconds := self.delay.get(queue):
            low, high = seconds if isinstance(seconds, tuple) else (seconds, seconds)
            await asyncio.sleep(random.uniform(low, high))
        if attempt < self.transient.get(queue, 0):
            raise InjectedFault(f"fault plan: attempt {attempt + 1} of {queue} fails")

    def crash_point(self, point: str, queue: str | None = None) -> None:
        """Die here if the plan says so."""
        for crash in self.crash:
            if crash.get("at") != point:
                continue
            if crash.get("queue") not in (None, queue):
                continue
            if random.random() < float(crash.get("probability", 1.0)):
                log.critical("fault plan: crashing", extra={"point": point, "queue": queue})
                logging.shutdown()
                os._exit(137)
