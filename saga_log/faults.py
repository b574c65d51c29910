"""Faults injected on purpose, to show the compensations (the sample's order_id prefixes).

With `SAGA_FAULTS=seed` each step fails, after writing its row, when the order_id starts
with its prefix; a longer prefix implies the shorter one ("22..." also starts with "2"),
which is how the compensation scenarios are reached. With `SAGA_FAULTS=off` (the default
outside docker-compose and `make dev`) nothing fails on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import Step

SEED_PREFIXES: dict[Step, str] = {
    Step.PROCESS_ORDER: "1",
    Step.UPDATE_ORDER_STATUS: "11",
    Step.PROCESS_PAYMENT: "2",
    Step.PROCESS_REFUND: "22",
    Step.RESERVE_INVENTORY: "3",
    Step.RELEASE_INVENTORY: "33",
}


@dataclass(frozen=True)
class Faults:
    """Which steps fail for which orders. Pure: the domain asks it, it does no I/O."""

    prefixes: dict[Step, str] = field(default_factory=dict)

    def fails(self, step: Step, order_id: str) -> bool:
        prefix = self.prefixes.get(step)
        return prefix is not None and order_id.startswith(prefix)

    @classmethod
    def named(cls, name: str) -> Faults:
        """The fault plan called `name` (`seed` or `off`); anything else is a clear error."""
        normalized = name.strip().lower()
        if normalized == "seed":
            return cls(dict(SEED_PREFIXES))
        if normalized in {"", "off", "none"}:
            return cls()
        raise ValueError(f"SAGA_FAULTS must be 'seed' or 'off', not {name!r}")
