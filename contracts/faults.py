"""Faults injected on purpose, to show the compensations: the samples' own demo faults.

Each saga declares its faults (`Saga.faults`): the order saga fails a step when the
order_id starts with the step's prefix ("22..." also starts with "2", which is how the
compensation scenarios are reached); the fare saga when the customerId ends with a
suffix (`fail_auth`, ...). With `SAGA_FAULTS=seed` every declared fault is on; with
`SAGA_FAULTS=off` (the default outside docker-compose and `make dev`) none is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DemoFault:
    """`step` raises `error` for a key (an order_id, a customerId) that starts
    (`prefix`) or ends (`suffix`) with one of `values`."""

    step: str
    error: str
    match: Literal["prefix", "suffix"]
    values: tuple[str, ...]

    def hits(self, key: str) -> bool:
        if self.match == "prefix":
            return key.startswith(self.values)
        return key.endswith(self.values)


@dataclass(frozen=True)
class Faults:
    """Which steps fail for which keys. Pure: a domain asks it, it does no I/O."""

    faults: tuple[DemoFault, ...] = ()

    def error(self, step: str, key: str) -> str | None:
        """The error `step` raises for `key` on purpose, or None (the first declared
        fault that hits wins: declare the more specific one first)."""
        for fault in self.faults:
            if fault.step == step and fault.hits(key):
                return fault.error
        return None

    def fails(self, step: str, key: str) -> bool:
        return self.error(step, key) is not None

    @classmethod
    def named(cls, name: str, declared: Iterable[DemoFault]) -> Faults:
        """The fault plan called `name` (`seed` or `off`); anything else is a clear error."""
        normalized = name.strip().lower()
        if normalized == "seed":
            return cls(tuple(declared))
        if normalized in {"", "off", "none"}:
            return cls()
        raise ValueError(f"SAGA_FAULTS must be 'seed' or 'off', not {name!r}")
