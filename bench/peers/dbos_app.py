"""The order saga on DBOS Transact (dbos 3.4): one workflow whose id is the order id, each
step a `@DBOS.step` (its result checkpointed in DBOS's system database, in PostgreSQL,
before the workflow goes on), the compensations run in reverse when a step fails.

DBOS is a library: the workflows run in the process that starts them. This one process
launches DBOS, then starts the sagas (`DBOS.start_workflow_async`) and waits for each
result, running the phases of load.py:

    python dbos_app.py SPEC.json

with PEER_DBOS_SYSTEM_URL (the system database) and PEER_DB_ORDERS, PEER_DB_PAYMENTS and
PEER_DB_INVENTORY (each step's database). Runs in .peers/dbos-venv, never in the
project's environment.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import uvloop
from dbos import DBOS, DBOSConfig, SetWorkflowID
from load import read_spec, run_phases
from steps import FORWARD, StepFailed, Steps, failed, succeeded

steps = Steps.from_env(dict(os.environ))


@DBOS.step(name="ProcessOrder")
async def process_order(order: dict[str, Any]) -> bool:
    return await steps.process_order(order)


@DBOS.step(name="ProcessPayment")
async def process_payment(order: dict[str, Any]) -> bool:
    return await steps.process_payment(order)


@DBOS.step(name="ReserveInventory")
async def reserve_inventory(order: dict[str, Any]) -> bool:
    return await steps.reserve_inventory(order)


@DBOS.step(name="UpdateOrderStatus")
async def update_order_status(order_id: str) -> bool:
    return await steps.update_order_status(order_id)


@DBOS.step(name="ProcessRefund")
async def process_refund(order_id: str) -> bool:
    return await steps.process_refund(order_id)


@DBOS.step(name="ReleaseInventory")
async def release_inventory(order_id: str) -> bool:
    return await steps.release_inventory(order_id)


STEPS = {
    "process_order": process_order,
    "process_payment": process_payment,
    "reserve_inventory": reserve_inventory,
    "update_order_status": update_order_status,
    "process_refund": process_refund,
    "release_inventory": release_inventory,
}


@DBOS.workflow(name="OrderSaga")
async def order_saga(order: dict[str, Any]) -> dict[str, Any]:
    order_id = order["order_id"]
    compensations: list[str] = []
    for name, method, _undo_name, undo_method in FORWARD:
        compensations.append(undo_method)
        try:
            await STEPS[method](order)
        except StepFailed:
            for comp in reversed(compensations):
                try:
                    await STEPS[comp](order_id)
                except StepFailed as exc:
                    return failed(name, exc.error)
            return failed(name, None)
    return succeeded()


async def main(spec_path: str) -> None:
    spec = read_spec(spec_path)
    config: DBOSConfig = {
        "name": "peer-order-saga",
        "system_database_url": os.environ["PEER_DBOS_SYSTEM_URL"],
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:

        async def call(order: dict[str, Any]) -> dict[str, Any]:
            with SetWorkflowID(order["order_id"]):
                handle = await DBOS.start_workflow_async(order_saga, order)
            return await handle.get_result()

        await run_phases(call, spec)
    finally:
        await steps.close()
        DBOS.destroy()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1]))
