"""Everything one gateway app holds (on `app.state.gateway`): built by `create_app`, no globals."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from empathy.engine import EngineSupervisor
from empathy.errors import EmpathyError, ModelError
from empathy.layout import Layout
from empathy.settings import Settings
from serve.catalog import Catalog, load_catalog
from serve.completion_writer import CompletionWriter
from serve.experiments import Experiment, check_arms, load_experiments_file
from serve.metrics import GatewayMetrics, closed_label
from serve.routing import StickyCache
from serve.sampling import defaults_for
from serve.settings import SamplingDefaults
from serve.store import Completion, Store
from serve.upstreams import UpstreamPool

if TYPE_CHECKING:
    from empathy.router import Recheck, TextEncoder

log = logging.getLogger("empathy.serve")


class RouterLike(Protocol):
    grid: list[float]

    def predict(self, messages: list[dict[str, Any]]) -> list[float]: ...


@dataclass
class Gateway:
    settings: Settings
    catalog: Catalog
    store: Store
    metrics: GatewayMetrics
    sticky: StickyCache
    pool: UpstreamPool | None = None
    supervisor: EngineSupervisor | None = None
    moe_supervisor: EngineSupervisor | None = None  # the MoE's own vLLM child, when the gateway owns it
    router: RouterLike | None = None
    experiments: dict[str, Experiment] = field(default_factory=dict)
    writer: CompletionWriter | None = None  # started by the lifespan, for its event loop
    # Computed on the path of every request, kept: the merged sampling defaults of the models that have
    # their own (EMPATHY_MODEL_SAMPLING), and the metric labels of the `experiments` they were made from.
    _sampling: dict[str, SamplingDefaults] = field(default_factory=dict, init=False, repr=False)
    _labels: tuple[object, frozenset[str], frozenset[str]] = field(
        default=(None, frozenset(), frozenset()), init=False, repr=False)

    async def add_completion(self, row: Completion) -> None:
        """Store a reply's completion row: queued for the writer (`completions_written` waits for it)."""
        if self.writer is None:  # outside the lifespan (before it starts, or replies ending at shutdown)
            await asyncio.to_thread(self.store.add_completion, row)
        else:
            self.writer.add(row)

    async def completions_written(self) -> None:
        """Every completion row of the replies that ended before this call is in the store."""
        if self.writer is not None:
            await self.writer.written()

    def models(self) -> list[str]:
        return [*self.catalog.gateway_models(), *(n for n, e in self.experiments.items() if e.active)]

    def sampling(self, model: str) -> SamplingDefaults:
        """The sampling defaults of gateway model `model` (`serve.sampling.defaults_for`)."""
        merged = self._sampling.get(model)
        if merged is None:
            merged = defaults_for(self.settings, model)
            if model in self.settings.model_sampling:  # (a bounded set of names: only these are kept)
                self._sampling[model] = merged
        return merged

    def _label_sets(self) -> tuple[frozenset[str], frozenset[str]]:
        """The model and arm labels (served models and experiments; their arms), made again when
        `experiments` is replaced (`refresh_experiments`)."""
        made_from, models, arms = self._labels
        if made_from is not self.experiments:
            models = frozenset({*self.catalog.gateway_models(), *self.experiments})
            arms = frozenset(a.name for e in self.experiments.values() for a in e.arms)
            self._labels = (self.experiments, models, arms)
        return models, arms

    def model_label(self, model: str | None) -> str:
        """The metric label of a model name: served models and experiments, else `other`."""
        return closed_label(model, self._label_sets()[0])

    def arm_label(self, arm: str | None) -> str:
        return closed_label(arm, self._label_sets()[1])

    async def refresh_experiments(self) -> None:
        found = await asyncio.to_thread(self.store.experiments)
        self.experiments = {e.name: e for e in found}

    async def put_experiment(self, exp: Experiment) -> Experiment:
        """Create or replace `exp`; it keeps the creation time of the experiment it replaces."""
        check_arms(exp, self.catalog.gateway_models(), self.catalog.grid)
        old = self.experiments.get(exp.name)
        exp = exp.model_copy(update={"created": old.created if old and old.created else time.time()})
        await asyncio.to_thread(self.store.save_experiment, exp)
        await self.refresh_experiments()
        return exp

    async def delete_experiment(self, name: str) -> bool:
        deleted = await asyncio.to_thread(self.store.delete_experiment, name)
        await self.refresh_experiments()
        return deleted

    async def load_experiments_file(self, path: Path) -> None:
        for exp in load_experiments_file(path):
            await self.put_experiment(exp)


def encoder_cache() -> Path:
    """Where the exported encoder graph is kept: one per user, shared by every data dir and gateway (the
    file name carries the key of what it was exported from)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "empathy" / "router-encoder"


def router_encoder(settings: Settings) -> TextEncoder:
    """The router's encoder as EMPATHY_ROUTER_RUNTIME says (an ONNX Runtime graph by default; torch if asked,
    or with a warning when onnxruntime is not installed)."""
    from empathy.router import ContextEncoder, text_encoder

    try:
        return text_encoder(settings.router_runtime, encoder_cache(), settings.router_threads)
    except ModelError as exc:
        log.warning("router encoder on torch: %s", exc)
    return ContextEncoder()


def router_recheck(settings: Settings) -> Recheck | None:
    """The float32 re-check of the `onnx-int8` runtime's near ties (EMPATHY_ROUTER_INT8_MARGIN)."""
    from empathy.router import runtime_recheck

    try:
        return runtime_recheck(settings.router_runtime, encoder_cache(), settings.router_threads,
                               settings.router_int8_margin)
    except ModelError as exc:
        log.warning("router without its float32 re-check: %s", exc)
    return None


def load_router(data_dir: Path, catalog: Catalog, settings: Settings) -> RouterLike | None:
    """The trained router if `<data_dir>/router/` has one whose grid matches the served blends."""
    from empathy.router import ARTIFACT_JSON, Router

    layout = Layout(data_dir)
    folder = layout.router
    if not (folder / ARTIFACT_JSON).is_file():
        log.info("no router artifact in %s: model `empathy` uses the default blend", folder)
        return None
    try:
        router = Router.load(folder, router_encoder(settings), router_recheck(settings))
        router.check_blends(catalog.grid, layout.blends_index)
    except EmpathyError as exc:
        log.warning("router not used: %s", exc)
        return None
    return router


def reload_catalog(gateway: Gateway) -> Catalog:
    # `empathy-moe` stays as served at start (its engine is set up once; restart the gateway for a new one).
    gateway.catalog = replace(load_catalog(Path(gateway.settings.data_dir)), moe=gateway.catalog.moe)
    gateway.sticky.clear()
    return gateway.catalog
