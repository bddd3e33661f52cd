"""`/health` (gateway and each engine) and `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serve.state import Gateway

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    gw: Gateway = request.app.state.gateway
    engines: list[dict[str, Any]] = [u.describe() for u in gw.pool.upstreams] if gw.pool else []
    if gw.supervisor is not None:
        for e in engines:
            e.update(supervised=True, restarts=gw.supervisor.restarts, pid=gw.supervisor.pid)
    ready = any(e["healthy"] for e in engines)
    body = {"status": "ok" if ready else "degraded", "gateway": "ok", "engines": engines,
            "router": gw.router is not None, "grid": gw.catalog.grid}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
