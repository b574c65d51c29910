"""The order saga's six steps as the peers run them (SEED_BEHAVIOUR.md): each writes to its
own PostgreSQL database, idempotently (keyed by order id and step: INSERT ... ON CONFLICT DO
NOTHING), one commit per step, as our services do.

Imported by the peers' own processes, in their own venvs: only the standard library and
asyncpg here, nothing of the project's.

The demo faults are the sample's (the order_id prefix picks the step that fails; a step
writes first, then fails): the benchmark's orders (prefix "40") never meet them; the
scenario check before each peer's measurements does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import asyncpg

#: Each step's database, by role: the harness makes one of each per peer.
DATABASES = ("orders", "payments", "inventory")

SCHEMA = {
    "orders": """
        CREATE TABLE orders (
            order_id text PRIMARY KEY,
            customer_id text NOT NULL,
            order_date text NOT NULL,
            items jsonb NOT NULL,
            order_status text NOT NULL
        )""",
    "payments": """
        CREATE TABLE payments (
            order_id text NOT NULL,
            type text NOT NULL,
            transaction_id uuid NOT NULL,
            merchant_id text NOT NULL,
            amount numeric NOT NULL,
            PRIMARY KEY (order_id, type)
        )""",
    "inventory": """
        CREATE TABLE inventory (
            order_id text NOT NULL,
            type text NOT NULL,
            transaction_id uuid NOT NULL,
            items jsonb NOT NULL,
            PRIMARY KEY (order_id, type)
        )""",
}

NAMESPACE = uuid.UUID("8b03bc51-6db8-4d24-9e5b-0f8245f5f42e")

#: order_id prefix -> (step, error), as the sample's demo faults.
FAULTS = {
    "ProcessOrder": ("1", "ErrProcessOrder"),
    "UpdateOrderStatus": ("11", "ErrUpdateOrderStatus"),
    "ProcessPayment": ("2", "ErrProcessPayment"),
    "ProcessRefund": ("22", "ErrProcessRefund"),
    "ReserveInventory": ("3", "ErrReserveInventory"),
    "ReleaseInventory": ("33", "ErrReleaseInventory"),
}


class StepFailed(Exception):
    """A business failure of a step (the sample's custom errors): never retried."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def transaction_id(order_id: str, kind: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{order_id}|{kind}")


def _fault(step: str, order_id: str) -> None:
    prefix, error = FAULTS[step]
    if order_id.startswith(prefix):
        raise StepFailed(error)


class Steps:
    """The six steps, over one asyncpg pool per database (asyncpg's default size), opened
    on first use in the running event loop."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Steps:
        return cls({name: environ[f"PEER_DB_{name.upper()}"] for name in DATABASES})

    async def pool(self, name: str) -> asyncpg.Pool:
        pool = self.pools.get(name)
        if pool is None:
            async with self._lock:
                if name not in self.pools:
                    self.pools[name] = await asyncpg.create_pool(self.urls[name])
                pool = self.pools[name]
        return pool

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()

    # --- forward ---------------------------------------------------------------------

    async def process_order(self, order: dict[str, Any]) -> bool:
        pool = await self.pool("orders")
        await pool.execute(
            "INSERT INTO orders (order_id, customer_id, order_date, items, order_status)"
            " VALUES ($1, $2, $3, $4, 'New') ON CONFLICT DO NOTHING",
            order["order_id"],
            order["customer_id"],
            order["order_date"],
            json.dumps(order["items"]),
        )
        _fault("ProcessOrder", order["order_id"])
        return True

    async def process_payment(self, order: dict[str, Any]) -> bool:
        amount = sum(
            (
                Decimal(str(item["qty"])) * Decimal(str(item["unit_price"]))
                for item in order["items"]
            ),
            Decimal(0),
        )
        pool = await self.pool("payments")
        await pool.execute(
            "INSERT INTO payments (order_id, type, transaction_id, merchant_id, amount)"
            " VALUES ($1, 'Debit', $2, 'merch1', $3) ON CONFLICT DO NOTHING",
            order["order_id"],
            transaction_id(order["order_id"], "Debit"),
            amount,
        )
        _fault("ProcessPayment", order["order_id"])
        return True

    async def reserve_inventory(self, order: dict[str, Any]) -> bool:
        pool = await self.pool("inventory")
        await pool.execute(
            "INSERT INTO inventory (order_id, type, transaction_id, items)"
            " VALUES ($1, 'Reserve', $2, $3) ON CONFLICT DO NOTHING",
            order["order_id"],
            transaction_id(order["order_id"], "Reserve"),
            json.dumps([item["item_id"] for item in order["items"]]),
        )
        _fault("ReserveInventory", order["order_id"])
        return True

    # --- compensations: each finds what it undoes in its own database -----------------

    async def release_inventory(self, order_id: str) -> bool:
        pool = await self.pool("inventory")
        await pool.execute(
            "INSERT INTO inventory (order_id, type, transaction_id, items)"
            " SELECT order_id, 'Release', $2, items FROM inventory"
            " WHERE order_id = $1 AND type = 'Reserve' ON CONFLICT DO NOTHING",
            order_id,
            transaction_id(order_id, "Release"),
        )
        _fault("ReleaseInventory", order_id)
        return True

    async def process_refund(self, order_id: str) -> bool:
        pool = await self.pool("payments")
        await pool.execute(
            "INSERT INTO payments (order_id, type, transaction_id, merchant_id, amount)"
            " SELECT order_id, 'Credit', $2, merchant_id, -amount FROM payments"
            " WHERE order_id = $1 AND type = 'Debit' ON CONFLICT DO NOTHING",
            order_id,
            transaction_id(order_id, "Credit"),
        )
        _fault("ProcessRefund", order_id)
        return True

    async def update_order_status(self, order_id: str) -> bool:
        pool = await self.pool("orders")
        await pool.execute(
            "UPDATE orders SET order_status = 'Pending' WHERE order_id = $1", order_id
        )
        _fault("UpdateOrderStatus", order_id)
        return True


#: The forward steps in order, each with the compensation that undoes it (registered
#: before the step runs: a step that writes and then fails is undone too).
FORWARD = (
    ("ProcessOrder", "process_order", "UpdateOrderStatus", "update_order_status"),
    ("ProcessPayment", "process_payment", "ProcessRefund", "process_refund"),
    ("ReserveInventory", "reserve_inventory", "ReleaseInventory", "release_inventory"),
)


def succeeded() -> dict[str, Any]:
    return {"terminal": "OrderSucceeded", "failed_step": None, "compensation_error": None}


def failed(step: str, compensation_error: str | None) -> dict[str, Any]:
    """The saga's end on a failed step: OrderFailed, and the error of the compensation that
    failed and stopped the chain, if one did (the sample's "failed" notification)."""
    return {
        "terminal": "OrderFailed",
        "failed_step": step,
        "compensation_error": compensation_error,
    }
