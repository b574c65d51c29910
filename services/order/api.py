"""The order service's HTTP API: GET /orders/{order_id}."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.order.tables import order_sagas, orders


async def get_order(request: Request) -> JSONResponse:
    """The order, its status, its saga's outcome and the transactions it learned of."""
    order_id = request.path_params["order_id"]
    engine = request.app.state.runtime.engine
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(orders, *[c for c in order_sagas.c if c.name != "order_id"])
                .join(order_sagas, order_sagas.c.order_id == orders.c.order_id, isouter=True)
                .where(orders.c.order_id == order_id)
            )
        ).first()
    if row is None:
        return JSONResponse({"error": "order not found", "order_id": order_id}, status_code=404)
    return JSONResponse(_order_json(row._mapping))


def _order_json(row: Any) -> dict[str, Any]:
    return {
        "order_id": row["order_id"],
        "order_date": row["order_date"].isoformat(),
        "customer_id": row["customer_id"],
        "order_status": row["order_status"],
        "items": row["items"],
        "saga": {
            "outcome": row["outcome"],
            "error": "SagaFailed" if row["outcome"] == "failed" else None,
            "cause": row["cause"],
            "failed_compensation": row["failed_compensation"],
            "compensation_error": row["compensation_error"],
            "started_at": row["started_at"].isoformat() if row["started_at"] else None,
            "updated_at": row["updated_at"].isoformat() if row["updated_at"] else None,
        },
        "payment_transactions": row["payment_transactions"] or {},
        "inventory_transactions": row["inventory_transactions"] or {},
    }


routes = [Route("/orders/{order_id}", get_order, methods=["GET"])]
