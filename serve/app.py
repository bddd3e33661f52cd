"""The gateway app: `create_app(settings, ...) -> FastAPI`."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from empathy.db import make_engine
from empathy.engine import EngineSupervisor
from empathy.layout import Layout
from empathy.settings import Settings
from serve import errors, openapi
from serve.api import admin, experiments_api, feedback, health, openai_api
from serve.catalog import Catalog, load_catalog
from serve.event_stream import BODY_SEND
from serve.lifecycle import engine_spec, lifespan_for, moe_engine
from serve.metrics import GatewayMetrics
from serve.middleware import RequestIdMiddleware
from serve.routing import StickyCache
from serve.state import Gateway, RouterLike
from serve.store import Store

log = logging.getLogger("empathy.serve")


class GatewayApp(FastAPI):
    """The FastAPI app that hands the server's own send to streamed replies' bodies (`BODY_SEND`) and has
    `direct` answer the requests it takes (the completion routes) in front of FastAPI's and Starlette's
    layers: each is a coroutine frame that every wake-up of a streaming request passes through twice."""

    direct: RequestIdMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[BODY_SEND] = send
            if self.direct is not None and self.direct.endpoint(scope) is not None:
                scope["app"] = self  # as Starlette's own __call__ does
                await self.direct(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, catalog: Catalog | None = None,
               supervisor: EngineSupervisor | None = None, router: RouterLike | None = None,
               mount_ui: bool | None = None, freeze_gc: bool = False) -> FastAPI:
    """The gateway over `settings.upstreams`, or over `supervisor`'s engine, or (neither given) over a vLLM
    child it starts itself from `settings`. `catalog` and `router` default to what `<data_dir>` holds.
    `freeze_gc`: the gateway owns the process (`empathy serve`), see `serve.lifecycle.freeze_startup`."""
    catalog, moe_supervisor = moe_engine(settings, catalog or load_catalog(Path(settings.data_dir)))
    owns = False
    if not settings.upstreams and supervisor is None:
        log_file = Layout(settings.data_dir).log("vllm")
        supervisor = EngineSupervisor(engine_spec(settings, catalog), log_file,
                                      start_timeout=settings.vllm_start_timeout)
        owns = True
    gw = Gateway(settings=settings, catalog=catalog,
                 store=Store(make_engine(settings.resolved_store_url())), metrics=GatewayMetrics(),
                 sticky=StickyCache(settings.sticky_sessions), supervisor=supervisor, router=router,
                 moe_supervisor=moe_supervisor)
    app = GatewayApp(title="empathy-router gateway", version="0.1.0",
                     lifespan=lifespan_for(gw, owns, freeze_gc),
                     docs_url=None, redoc_url=None, openapi_url=None)  # serve.openapi serves them
    app.state.gateway = gw
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)
    app.direct = RequestIdMiddleware(app.router, direct={route.path: route.endpoint
                                                         for route in openai_api.completions_api.routes
                                                         if isinstance(route, APIRoute)})
    app.include_router(openai_api.completions_api)  # first: routes are matched in order, these most often
    for module in (openai_api, feedback, experiments_api, health, admin, openapi):
        app.include_router(module.api)
    app.include_router(experiments_api.admin_api)
    app.openapi = lambda: openapi.build_openapi(app)  # type: ignore[method-assign]
    if settings.ui_enabled if mount_ui is None else mount_ui:
        return _mount_ui(app, settings)
    return app


def _mount_ui(app: FastAPI, settings: Settings) -> FastAPI:
    if importlib.util.find_spec("ui.app") is None:
        log.info("ui/app.py not found: serving the API only")
        return app
    from ui.app import mount_ui

    host = "127.0.0.1" if settings.host in {"0.0.0.0", "::"} else settings.host
    key = settings.api_keys[0] if settings.api_keys else "EMPTY"
    return mount_ui(app, f"http://{host}:{settings.port}/v1", key, max_tokens=settings.ui_max_tokens)
