"""Admin: reload adapters and the router from `<data_dir>` (vLLM's own adapter endpoints stay hidden)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request

from serve.auth import require_admin
from serve.lifecycle import engine_spec
from serve.schemas import ERRORS, Reloaded
from serve.state import Gateway, load_router, reload_catalog

api = APIRouter(dependencies=[Depends(require_admin)], responses=ERRORS)


@api.post("/admin/reload", responses={200: {"model": Reloaded}})
async def reload(request: Request) -> dict[str, Any]:
    gw: Gateway = request.app.state.gateway
    old_paths = dict(gw.catalog.paths)
    catalog = await asyncio.to_thread(reload_catalog, gw)
    gw.router = await asyncio.to_thread(load_router, Path(gw.settings.data_dir), catalog, gw.settings)
    restarted = False
    if gw.supervisor is not None and catalog.paths != old_paths:
        # The child serves a fixed set of LoRA modules: a new set needs a new child.
        spec = engine_spec(gw.settings, catalog)
        await asyncio.to_thread(gw.supervisor.respawn, spec)
        restarted = True
    return {"grid": catalog.grid, "experts": catalog.experts, "router": gw.router is not None,
            "engine_restarted": restarted}
