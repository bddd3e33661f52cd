"""`/health` (gateway and each engine) and `/metrics` (Prometheus, behind EMPATHY_METRICS_ACCESS)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serve.access import check_access
from serve.auth import bearer, is_admin
from serve.schemas import ERRORS, Health
from serve.state import Gateway

api = APIRouter()


@api.get("/health", responses={200: {"model": Health}, 503: {"model": Health}})
async def health(request: Request) -> JSONResponse:
    """Gateway and engines. Engines are numbered; their URL and PID only with the admin key."""
    gw: Gateway = request.app.state.gateway
    private = is_admin(request, bearer(request))
    if gw.pool:
        gw.pool.refresh_probed()
    engines: list[dict[str, Any]] = [u.describe(i, private) for i, u in enumerate(gw.pool.upstreams)] \
        if gw.pool else []
    if gw.supervisor is not None:
        for e in engines:
            e.update(supervised=True, restarts=gw.supervisor.restarts,
                     **({"pid": gw.supervisor.pid} if private else {}))
    ready = any(e["healthy"] for e in engines)
    body = {"status": "ok" if ready else "degraded", "gateway": "ok", "engines": engines,
            "router": gw.router is not None, "grid": gw.catalog.grid}
    return JSONResponse(body, status_code=200 if ready else 503)


@api.get("/metrics", responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                                         "description": "Prometheus text format"}, **ERRORS})
async def metrics(request: Request) -> Response:
    check_access(request, "metrics_access")
    gw: Gateway = request.app.state.gateway
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
