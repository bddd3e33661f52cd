"""Start-up and shut-down of a gateway app: engines, HTTP client, router, experiments."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI

from empathy.engine import EngineSpec, EngineSupervisor, lora_rank_for, spec_from_settings
from empathy.layout import Layout
from empathy.settings import Settings
from serve.catalog import MOE_NAME, Catalog
from serve.completion_writer import CompletionWriter
from serve.metrics import EngineCollector
from serve.state import Gateway, load_router
from serve.upstreams import Upstream, UpstreamPool, upstream_client

log = logging.getLogger("empathy.serve")


def engine_spec(settings: Settings, catalog: Catalog) -> EngineSpec:
    """The vLLM child for these settings: base model plus every expert and blend as a LoRA module."""
    return spec_from_settings(settings, lora_modules=catalog.paths, max_lora_rank=lora_rank_for(catalog.rank))


def moe_engine(settings: Settings, catalog: Catalog) -> tuple[Catalog, EngineSupervisor | None]:
    """The MoE's own vLLM child (vLLM serves one model per server), when `<data_dir>/moe` exists and no
    `moe_upstreams` serve it; the catalog lists `empathy-moe` only when something serves it."""
    if not catalog.moe or not settings.moe_serve:
        return replace(catalog, moe=None), None
    if settings.moe_upstreams:
        return catalog, None
    spec = spec_from_settings(settings, model=catalog.moe, served_name=MOE_NAME, port=settings.moe_vllm_port)
    log_file = Layout(settings.data_dir).log("vllm-moe")
    return catalog, EngineSupervisor(spec, log_file, start_timeout=settings.vllm_start_timeout)


def _moe_upstreams(gw: Gateway) -> list[Upstream]:
    claims = frozenset({MOE_NAME})
    if not gw.catalog.moe:
        return []
    if gw.settings.moe_upstreams:
        return [Upstream(url.rstrip("/").removesuffix("/v1"), models=claims)
                for url in gw.settings.moe_upstreams]
    sup = gw.moe_supervisor
    return [Upstream(sup.url, probe=lambda: (sup.ready, sup.state), models=claims)] if sup else []


def make_upstreams(gw: Gateway) -> list[Upstream]:
    if gw.settings.upstreams:
        return [*(Upstream(url.rstrip("/").removesuffix("/v1")) for url in gw.settings.upstreams),
                *_moe_upstreams(gw)]
    sup = gw.supervisor
    assert sup is not None
    return [Upstream(sup.url, probe=lambda: (sup.ready, sup.state)), *_moe_upstreams(gw)]


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def freeze_startup() -> None:
    """Move every object alive after start-up (modules, the router, the UI: about 180,000) out of the cyclic
    garbage collector's reach. A full collection walked them all and held the event loop 130-160 ms, twice
    per 3,000 streamed replies here, stalling every stream in flight; after this about 3 ms. For a
    process the gateway owns: objects frozen are never collected as cyclic garbage."""
    gc.collect()
    gc.freeze()


def lifespan_for(gw: Gateway, owns_supervisor: bool, freeze_gc: bool = False) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_supervisor and gw.supervisor is not None:
            gw.supervisor.start()  # requests get 503 until the child is healthy
        if gw.moe_supervisor is not None:
            gw.moe_supervisor.start()  # the MoE's child: its own engine, started alongside
        async with upstream_client() as client:
            gw.pool = UpstreamPool(make_upstreams(gw), client, gw.settings.health_interval,
                                   gw.settings.health_timeout, gw.settings.upstream_timeout)
            sup = gw.supervisor
            restarts = (lambda: sup.restarts) if sup else (lambda: 0)
            gw.metrics.watch_engines(EngineCollector(restarts, lambda: [
                (str(i), u.healthy, u.outstanding)
                for i, u in enumerate(gw.pool.upstreams)] if gw.pool else []))
            await gw.pool.check_all()
            gw.pool.start()
            await _load(gw)
            gw.writer = CompletionWriter(gw.store.add_completions, asyncio.get_running_loop(),
                                         gw.settings.completion_write_delay,
                                         lost=lambda _row, _exc: gw.metrics.rows_lost.inc()).start()
            refresher = asyncio.create_task(_keep_experiments_fresh(gw))
            if freeze_gc:
                freeze_startup()
            try:
                yield
            finally:
                refresher.cancel()
                writer, gw.writer = gw.writer, None
                await asyncio.to_thread(writer.close)
                await gw.pool.stop()
                if owns_supervisor and gw.supervisor is not None:
                    await asyncio.to_thread(gw.supervisor.stop)
                if gw.moe_supervisor is not None:
                    await asyncio.to_thread(gw.moe_supervisor.stop)

    return lifespan


async def _load(gw: Gateway) -> None:
    if gw.router is None:
        gw.router = await asyncio.to_thread(load_router, Path(gw.settings.data_dir), gw.catalog,
                                             gw.settings)
    await gw.refresh_experiments()
    if gw.settings.experiments_file:
        await gw.load_experiments_file(Path(gw.settings.experiments_file))
    log.info("gateway ready: models %s, grid %s, router %s", gw.models(), gw.catalog.grid,
             "loaded" if gw.router else "none (default blend)")


async def _keep_experiments_fresh(gw: Gateway) -> None:
    """Reload the experiments from the store every EMPATHY_EXPERIMENTS_REFRESH seconds, so gateways that
    share a database agree on them (one created through another gateway is served here soon after)."""
    while True:
        await asyncio.sleep(gw.settings.experiments_refresh)
        try:
            await gw.refresh_experiments()
        except Exception as exc:  # the store is unreachable for a moment: keep the experiments known
            log.warning("experiments not reloaded from the store (%s); keeping the %d known", exc,
                        len(gw.experiments))
