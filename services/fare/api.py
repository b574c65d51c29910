"""The fare service's HTTP API: GET /fares/{fare_id}."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.fare.tables import fare_sagas, fares


async def get_fare(request: Request) -> JSONResponse:
    """The fare (never its card: the last four digits only), its status and its saga."""
    fare_id = request.path_params["fare_id"]
    engine = request.app.state.runtime.engine
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(fares, *[c for c in fare_sagas.c if c.name != "fare_id"])
                .join(fare_sagas, fare_sagas.c.fare_id == fares.c.fare_id, isouter=True)
                .where(fares.c.fare_id == fare_id)
            )
        ).first()
    if row is None:
        return JSONResponse({"error": "fare not found", "fareId": fare_id}, status_code=404)
    return JSONResponse(_fare_json(row._mapping))


def _fare_json(row: Any) -> dict[str, Any]:
    return {
        "fareId": row["fare_id"],
        "customerId": row["customer_id"],
        "fareAmount": str(row["fare_amount"]),
        "cardLast4": row["card_last4"],
        "fareStatus": row["fare_status"],
        "saga": {
            "outcome": row["outcome"],
            "error": row["error"],
            "failed_compensation": row["failed_compensation"],
            "chargeToken": row["charge_token"],
            "chargeId": row["charge_id"],
            "started_at": row["started_at"].isoformat() if row["started_at"] else None,
            "updated_at": row["updated_at"].isoformat() if row["updated_at"] else None,
        },
    }


routes = [Route("/fares/{fare_id}", get_fare, methods=["GET"])]
