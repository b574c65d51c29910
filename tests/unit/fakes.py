"""Fakes for the unit tests of the delivery path: a database reduced to its inbox and the
transactions that committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saga_log.runtime import UndeclaredEvent


class FakeDatabase:
    """An inbox shared by every unit of work, and what each transaction committed."""

    def __init__(self) -> None:
        self.inbox: set[tuple[str, str]] = set()
        self.transactions: list[list[Any]] = []
        #: The events of every committed transaction (what the outbox would hold).
        self.published: list[Any] = []


class FakeUnitOfWork:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.claims: set[tuple[str, str]] = set()
        self.events: list[Any] = []
        self.work: list[Any] = []
        self.allowed: frozenset[Any] | None = None
        self.trace_context: dict[str, Any] = {}

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def restrict(self, events: Any) -> None:
        self.allowed = frozenset(events)

    async def lock_saga(self, saga_id: str) -> None:
        return None

    async def lock_sagas(self, saga_ids: Any) -> None:
        return None

    async def claim(self, consumer: str, message_id: str, message_type: str) -> bool:
        return bool(await self.claim_many(consumer, [(message_id, message_type)]))

    async def claim_many(
        self, consumer: str, messages: Sequence[tuple[str, str]], *, saga_ids: Any = ()
    ) -> set[str]:
        fresh = {m for m, _ in messages if (consumer, m) not in self.db.inbox | self.claims}
        self.claims |= {(consumer, m) for m in fresh}
        return fresh

    def publish(self, *events: Any) -> None:
        for event in events:
            if self.allowed is not None and type(event) not in self.allowed:
                raise UndeclaredEvent(f"{type(event).__name__} is not declared here")
        self.events.extend(events)

    @property
    def pending(self) -> list[Any]:
        return self.events

    async def commit(self) -> None:
        self.db.inbox |= self.claims
        self.db.transactions.append(self.work)
        self.db.published.extend(self.events)
