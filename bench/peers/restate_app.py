"""The order saga on Restate (restate-sdk 1.2): one workflow keyed by order id, each step a
`ctx.run` (its result journaled by the Restate server before the saga goes on), the
compensations run in reverse when a step fails. Served by hypercorn over HTTP/2 (h2c):

    hypercorn -k uvloop -w 1 --bind 127.0.0.1:PORT restate_app:app

with PEER_DB_ORDERS, PEER_DB_PAYMENTS and PEER_DB_INVENTORY naming each step's database.
Runs in .peers/restate-venv, never in the project's environment.
"""

from __future__ import annotations

import os
from typing import Any

import restate
from restate.exceptions import TerminalError
from steps import FORWARD, StepFailed, Steps, failed, succeeded

steps = Steps.from_env(dict(os.environ))

saga = restate.Workflow("OrderSaga")


async def _step(ctx: restate.WorkflowContext, name: str, method: str, arg: Any) -> None:
    async def action() -> bool:
        try:
            result: bool = await getattr(steps, method)(arg)
            return result
        except StepFailed as exc:
            # The sample's custom errors are never retried: a terminal failure, journaled.
            raise TerminalError(exc.error) from exc

    await ctx.run_typed(name, action)


@saga.main()
async def run(ctx: restate.WorkflowContext, order: dict[str, Any]) -> dict[str, Any]:
    order_id = order["order_id"]
    compensations: list[tuple[str, str]] = []
    for name, method, undo_name, undo_method in FORWARD:
        compensations.append((undo_name, undo_method))
        try:
            await _step(ctx, name, method, order)
        except TerminalError:
            for comp_name, comp_method in reversed(compensations):
                try:
                    await _step(ctx, comp_name, comp_method, order_id)
                except TerminalError as exc:
                    return failed(name, exc.message)
            return failed(name, None)
    return succeeded()


app = restate.app([saga])
