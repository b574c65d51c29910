"""One unit of work, alone: what the runtime's own statements cost per hop.

    python -m bench.uow                 5 rounds of 1,500 units of work
    python -m bench.uow --units 3000    longer rounds

Each unit of work does what a hop's transaction does around its handler: it claims one
message (locking its saga), writes one event to the outbox and commits (fsync on), on a
payment service's tables in a scratch database, one after the other on one connection.
Per unit of work it prints the wall time, this process's CPU and the CPU of the
PostgreSQL backend serving it (from /proc), so that two versions of the unit of work can
be compared back to back: run it in two checkouts, alternately (this VM's speed drifts
from minute to minute; docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from decimal import Decimal

import asyncpg

from contracts import PaymentDebited, transaction_id
from saga_log.runtime import ensure_database
from saga_log.runtime.database import create_engine, driver_of
from saga_log.runtime.migrations import upgrade
from saga_log.runtime.unit_of_work import UnitOfWork
from services.payment import main as payment_main
from services.payment import tables

WARMUP = 200


def backend_cpu(pid: int) -> float:
    """CPU seconds (user and system) of the PostgreSQL backend `pid` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(server: str, *, units: int, rounds: int) -> list[dict[str, float]]:
    name = f"bench_uow_{uuid.uuid4().hex[:8]}"
    url = f"{server.rstrip('/')}/{name}"
    await ensure_database(url)
    engine = create_engine(url, pool_size=1)
    try:
        await upgrade(engine, payment_main.MIGRATIONS)
        async with engine.connect() as connection:
            pid = int(await (await driver_of(connection)).fetchval("SELECT pg_backend_pid()"))

        async def one() -> None:
            order_id = f"order-{uuid.uuid4().hex[:12]}"
            unit = UnitOfWork(
                engine, outbox=tables.outbox, inbox=tables.inbox, on_commit=lambda rows: None
            )
            async with unit as uow:
                claimed = await uow.claim_many(
                    "payment.debit_payment",
                    [(f"m-{order_id}", "OrderCreated")],
                    saga_ids=[order_id],
                )
                assert claimed, "a fresh message id was not claimed"
                uow.publish(
                    PaymentDebited.caused_by(
                        f"c-{order_id}",
                        producer="payment",
                        order_id=order_id,
                        transaction_id=transaction_id(order_id, "Debit"),
                        amount=Decimal("1.00"),
                        items=[],
                    )
                )
                await uow.commit()

        for _ in range(WARMUP):
            await one()
        results = []
        for round_ in range(1, rounds + 1):
            cpu, backend, wall = time.process_time(), backend_cpu(pid), time.perf_counter()
            for _ in range(units):
                await one()
            result = {
                "wall_ms": 1000 * (time.perf_counter() - wall) / units,
                "client_cpu_ms": 1000 * (time.process_time() - cpu) / units,
                "postgresql_cpu_ms": 1000 * (backend_cpu(pid) - backend) / units,
            }
            print(
                f"round {round_}: per unit of work: wall {result['wall_ms']:.3f} ms, "
                f"client CPU {result['client_cpu_ms']:.3f} ms, "
                f"PostgreSQL backend CPU {result['postgresql_cpu_ms']:.3f} ms",
                flush=True,
            )
            results.append(result)
        return results
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(f"{server.rstrip('/')}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.uow", description=__doc__)
    parser.add_argument("--units", type=int, default=1500, help="units of work per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    server = os.environ.get("BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
    results = asyncio.run(measure(server, units=args.units, rounds=args.rounds))
    medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(
        f"median of {args.rounds} rounds: wall {medians['wall_ms']:.3f} ms, client CPU "
        f"{medians['client_cpu_ms']:.3f} ms, PostgreSQL backend CPU "
        f"{medians['postgresql_cpu_ms']:.3f} ms"
    )


if __name__ == "__main__":
    main()
