"""The saga history's HTTP API and web page.

GET /sagas?type=&status=&limit=&offset=  the sagas, newest first, with counts per status
GET /sagas/{saga_id}[?type=]             one saga: its state, timeline and flow
GET /saga-types                          every declared saga's flow, for drawing
GET /                                    the web page (saga_log/recorder/web)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from contracts import SAGAS, SAGAS_BY_NAME
from saga_log.recorder.state import STATUSES, in_order
from saga_log.recorder.tables import saga_events, sagas

WEB = Path(__file__).parent / "web"


def _deadline(request: Request) -> timedelta:
    return timedelta(seconds=request.app.state.runtime.settings.saga_deadline)


def _stuck(cutoff: datetime) -> ColumnElement[bool]:
    return and_(sagas.c.status == "running", sagas.c.last_event_at < cutoff)


def _shown_status(cutoff: datetime) -> ColumnElement[str]:
    return case((_stuck(cutoff), "stuck"), else_=sagas.c.status)


def _saga_type(request: Request) -> str | None:
    saga_type = request.query_params.get("type") or None
    if saga_type is not None and saga_type not in SAGAS_BY_NAME:
        raise ValueError(
            f"unknown saga type {saga_type[:64]!r}; use one of {', '.join(SAGAS_BY_NAME)}"
        )
    return saga_type


async def list_sagas(request: Request) -> JSONResponse:
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        return JSONResponse(
            {"error": f"unknown status {status[:64]!r}; use one of {', '.join(STATUSES)}"},
            status_code=400,
        )
    try:
        saga_type = _saga_type(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    try:
        limit = min(max(int(request.query_params.get("limit", 50)), 1), 500)
        offset = max(int(request.query_params.get("offset", 0)), 0)
    except ValueError:
        return JSONResponse({"error": "limit and offset must be integers"}, status_code=400)
    cutoff = datetime.now(UTC) - _deadline(request)
    shown = _shown_status(cutoff)
    of_type: list[ColumnElement[bool]] = [sagas.c.saga_type == saga_type] if saga_type else []
    where: list[ColumnElement[bool]] = list(of_type)
    if status == "stuck":
        where.append(_stuck(cutoff))
    elif status == "running":
        where.append(and_(sagas.c.status == "running", or_(sagas.c.last_event_at >= cutoff)))
    elif status is not None:
        where.append(sagas.c.status == status)
    engine = request.app.state.runtime.engine
    async with engine.connect() as connection:
        counts = {name: 0 for name in STATUSES}
        for name, count in (
            await connection.execute(select(shown, func.count()).where(*of_type).group_by(shown))
        ).all():
            counts[name] = count
        total = await connection.scalar(select(func.count()).select_from(sagas).where(*where))
        rows = (
            await connection.execute(
                select(sagas, shown.label("shown_status"))
                .where(*where)
                .order_by(
                    sagas.c.started_at.desc().nulls_last(), sagas.c.saga_id, sagas.c.saga_type
                )
                .limit(limit)
                .offset(offset)
            )
        ).all()
    return JSONResponse(
        {
            "counts": {**counts, "total": sum(counts.values())},
            "type": saga_type,
            "types": [saga.name for saga in SAGAS],
            "total": total,
            "limit": limit,
            "offset": offset,
            "sagas": [_summary(row._mapping) for row in rows],
        }
    )


async def get_saga(request: Request) -> JSONResponse:
    saga_id = request.path_params["saga_id"]
    try:
        saga_type = _saga_type(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    cutoff = datetime.now(UTC) - _deadline(request)
    engine = request.app.state.runtime.engine
    async with engine.connect() as connection:
        found = (
            await connection.execute(
                select(sagas, _shown_status(cutoff).label("shown_status")).where(
                    sagas.c.saga_id == saga_id,
                    *([sagas.c.saga_type == saga_type] if saga_type else []),
                )
            )
        ).all()
        if not found:
            return JSONResponse({"error": "saga not found", "saga_id": saga_id}, status_code=404)
        if len(found) > 1:
            types = sorted(row._mapping["saga_type"] for row in found)
            return JSONResponse(
                {"error": "several sagas have this id: say which with ?type=", "types": types},
                status_code=409,
            )
        row = found[0]
        events = (
            await connection.execute(
                select(saga_events)
                .where(
                    saga_events.c.saga_id == saga_id,
                    saga_events.c.saga_type == row._mapping["saga_type"],
                )
                .order_by(
                    func.coalesce(saga_events.c.occurred_at, saga_events.c.received_at),
                    saga_events.c.received_at,
                )
            )
        ).all()
    saga = {**row._mapping["state"], **_summary(row._mapping)}
    timeline = in_order(dict(e._mapping) for e in events)
    flow = SAGAS_BY_NAME[saga["saga_type"]].flow()
    return JSONResponse({"saga": saga, "timeline": [_event(e) for e in timeline], "flow": flow})


async def saga_types(request: Request) -> JSONResponse:
    """Every declared saga's flow: forward steps, compensations beneath, edges."""
    return JSONResponse({"types": [saga.flow() for saga in SAGAS]})


def _summary(row: Any) -> dict[str, Any]:
    state = row["state"]
    return {
        "saga_id": row["saga_id"],
        "saga_type": row["saga_type"],
        "status": row["shown_status"],
        "current_step": row["current_step"],
        "started_at": _iso(row["started_at"]),
        "last_event_at": _iso(row["last_event_at"]),
        "ended_at": _iso(row["ended_at"]),
        "duration_ms": state.get("duration_ms"),
        "cause": row["cause"],
        "attention": row["attention"],
        "event_count": row["event_count"],
        "expecting": state.get("expecting", []),
    }


def _event(row: Any) -> dict[str, Any]:
    return {
        "message_id": row["message_id"],
        "type": row["type"],
        "producer": row["producer"],
        "causation_id": row["causation_id"],
        "routing_key": row["routing_key"],
        "occurred_at": _iso(row["occurred_at"]),
        "received_at": _iso(row["received_at"]),
        "payload": row["payload"],
        "headers": row["headers"],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def index(request: Request) -> FileResponse:
    return FileResponse(WEB / "index.html")


routes = [
    Route("/", index),
    Route("/sagas", list_sagas),
    Route("/sagas/{saga_id}", get_saga),
    Route("/saga-types", saga_types),
    Mount("/static", app=StaticFiles(directory=WEB), name="static"),
]
