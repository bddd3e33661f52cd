"""`empathy train router` end to end: samples -> NLL per blend -> targets -> fit -> artifact + metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empathy.errors import DataError
from empathy.layout import Layout
from empathy.router import RouterWeights, save_artifact
from empathy.settings import Settings
from selection.sample import Sample
from training.router.cache import load_cache, save_cache
from training.router.fit import (
    Head,
    crossfit_metrics,
    holdout_mask,
    routing_metrics,
    softmax_head,
)
from training.router.grid import GridAdapter
from training.router.kind import collapse, fit_nll_head
from training.router.kind_data import context_features, fit_reply_kind, mean_reply_tokens

log = logging.getLogger("empathy.router")
CHUNK = 64  # samples scored between two saves of the NLL cache


def subset_ids(data_dir: Path) -> set[str]:
    """Ids of the samples the experts were trained on: the router must not learn from the experts' own data.

    An expert trained on a subset with `--limit` saw only its seeded pick of the subset file (recorded in its
    `empathy_meta.json`); a subset file without an expert for it (or changed since) counts whole.
    """
    from training.sft_data import file_sha256, read_subset, take

    layout = Layout(data_dir)
    ids: set[str] = set()
    for path in sorted(layout.subsets.glob("*.jsonl")):
        rows = read_subset(path) if path.stat().st_size else []
        meta_file = layout.expert(path.stem) / "empathy_meta.json"
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            if meta.get("subset_sha256") == file_sha256(path):
                rows = take(rows, meta["settings"].get("limit"), int(meta["settings"].get("seed", 42)))
        ids.update(str(row.get("id", "")) for row in rows)
    return ids


def router_samples(settings: Settings, split: str, limit: int | None, seed: int = 0) -> list[Sample]:
    """The first `limit` samples of a seeded shuffle of `split`, minus those in the experts' subsets."""
    from selection.corpus import load_corpus

    result = load_corpus(settings, split)
    excluded = subset_ids(settings.data_dir)
    samples = [s for s in result.samples if s.id not in excluded]
    if not samples:
        raise DataError(f"no {split!r} samples left for the router in {settings.corpus_path} "
                        f"({len(result.samples)} loaded, {len(excluded)} excluded as expert training data); "
                        "use --split with another split.")
    random.Random(seed).shuffle(samples)
    return samples[:limit] if limit else samples


def score_nll(settings: Settings, samples: Sequence[Sample], adapters: Sequence[GridAdapter],
              backend: str, url: str | None, batch_size: int = 8) -> np.ndarray:
    """NLL matrix (n_samples, n_grid) of each gold reply under each grid adapter.

    Scored in chunks that are saved as they finish (see `training.router.cache`): rows already in the
    cache are not scored again.
    """
    folder = Layout(settings.data_dir).router
    names = [a.name for a in adapters]
    rows = load_cache(folder, names)
    todo = [s for s in samples if s.id not in rows]
    if todo:
        log.info("router NLL: %d of %d samples cached, scoring %d", len(samples) - len(todo), len(samples),
                 len(todo))
        from tqdm import tqdm

        with nll_scorer(settings, adapters, backend, url, batch_size) as score, \
                tqdm(total=len(todo), desc=f"router NLL x{len(names)} ({backend})", unit="sample") as bar:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start:start + CHUNK]
                for sample, row in zip(chunk, score([s.messages() for s in chunk]), strict=True):
                    rows[sample.id] = np.asarray(row, dtype=np.float64)
                save_cache(folder, names, rows)
                bar.update(len(chunk))
    return np.array([rows[s.id] for s in samples], dtype=np.float64)


@contextlib.contextmanager
def nll_scorer(settings: Settings, adapters: Sequence[GridAdapter], backend: str, url: str | None,
               batch_size: int) -> Iterator[Callable[[list[list[dict[str, str]]]], list[list[float]]]]:
    """A function conversations -> NLL rows, on a model (transformers) or an engine (vLLM) held open."""
    from transformers import AutoTokenizer

    from empathy.base_model import base_model_path
    from training.router.nll import reply_span

    base = base_model_path(settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    names = [a.name for a in adapters]

    def spans(conversations: list[list[dict[str, str]]]) -> list[Any]:
        return [reply_span(tokenizer, c, max_tokens=settings.vllm_max_model_len - 1) for c in conversations]

    if backend == "transformers":
        from training.router.nll import load_peft, torch_nll

        model = load_peft(base, {a.name: a.path for a in adapters})
        yield lambda convs: torch_nll(model, names, spans(convs), pad_id=tokenizer.pad_token_id or 0,
                                      batch_size=batch_size, progress=False)
        return
    from openai import OpenAI

    from training.engine import engine_url
    from training.router.nll import vllm_nll

    rank = _max_rank(adapters)
    with engine_url(settings, url, {a.name: a.path for a in adapters}, rank, "vllm-router") as base_url:
        client = OpenAI(base_url=base_url, api_key="EMPTY", timeout=600)
        yield lambda convs: vllm_nll(client, names, spans(convs), batch_size=batch_size, progress=False)


def _max_rank(adapters: Sequence[GridAdapter]) -> int:
    ranks = [16]
    for adapter in adapters:
        config = Path(adapter.path) / "adapter_config.json"
        if config.is_file():
            ranks.append(int(json.loads(config.read_text()).get("r", 16)))
    return max(ranks)


def fit_router(features: np.ndarray, nll: np.ndarray, conv_ids: Sequence[str], grid: Sequence[float],
               head: Head, holdout: float) -> tuple[RouterWeights, dict[str, Any]]:
    """Fit on the held-in conversations and report held-out metrics; cross-fit over all samples (each
    routed by a fit without its conversation); then refit on everything for serving."""
    held = holdout_mask(conv_ids, holdout)
    if held.all() or not held.any():
        raise DataError(f"the hold-out split of {len(conv_ids)} samples is one-sided; use more samples "
                        "(--limit) so both parts are non-empty.")
    held_in = [c for c, h in zip(conv_ids, held, strict=True) if not h]
    weights = head(features[~held], nll[~held], held_in)
    metrics = {
        "heldout": routing_metrics(weights.probs(features[held]), nll[held], grid),
        "crossfit": crossfit_metrics(features, nll, conv_ids, grid, head),
        "train": routing_metrics(weights.probs(features[~held]), nll[~held], grid),
    }
    return head(features, nll, conv_ids), metrics


def resolve_backend(backend: str, url: str | None) -> str:
    """`auto`: vLLM when a GPU is there or a server is given (--url), else transformers (faster on CPU)."""
    if backend != "auto":
        return backend
    if url:
        return "vllm"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def train_router(settings: Settings, adapters: Sequence[GridAdapter], split: str, limit: int | None,
                 backend: str = "auto", url: str | None = None, extra_meta: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    started = time.monotonic()
    backend = resolve_backend(backend, url)
    samples = router_samples(settings, split, limit)
    log.info("router: %d %s samples x %d blends (%s)", len(samples), split, len(adapters), backend)
    nll = score_nll(settings, samples, adapters, backend, url, batch_size=settings.router_nll_batch_size)
    scored = time.monotonic()
    folder = Layout(settings.data_dir).router
    features = context_features(folder, samples)
    conv_ids, grid = [s.conv_id for s in samples], [a.weight for a in adapters]
    if settings.router_features == "reply-kind":
        kind, kind_meta = fit_reply_kind(settings, samples, features, folder)
        tau = mean_reply_tokens(settings, samples)
        weights, metrics = fit_router(kind.predict(features), nll, conv_ids, grid,
                                      lambda x, y, _: fit_nll_head(x, y, tau), settings.router_holdout)
        weights = collapse(kind, weights)  # one softmax regression over the context features
        kind_meta["tau"] = round(tau, 3)
    else:
        kind_meta = None
        weights, metrics = fit_router(features, nll, conv_ids, grid,
                                      softmax_head(settings.router_temperature, settings.router_l2),
                                      settings.router_holdout)
    meta = {"adapters": [a.name for a in adapters], "split": split, "n_samples": len(samples),
            "backend": backend, "features": settings.router_features, "reply_kind": kind_meta,
            "temperature": settings.router_temperature, "l2": settings.router_l2,
            "holdout": settings.router_holdout, "metrics": metrics,
            "seconds": {"nll": round(scored - started, 1), "total": round(time.monotonic() - started, 1)},
            **(extra_meta or {})}
    save_artifact(folder, grid, weights, meta)
    return meta
