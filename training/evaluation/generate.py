"""Replies for an evaluation run: the served model of each sample, and generation through vLLM (greedy
by default) or any OpenAI-compatible endpoint such as the gateway."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empathy.errors import ConfigError, ModelError
from empathy.layout import MOE_NAME, Layout, grid_argmax, grid_weight
from training.router.grid import EXPERT_NAMES

MODEL_CHOICES = ("base", "full", "sensibility", "rationality", "routed", "blend:<weight>", "moe")


@dataclass(frozen=True)
class ModelSpec:
    """What `--model` asks for: a fixed served model, or the router (`routed`)."""

    label: str
    served: str | None  # None: routed per sample


def blend_names(data_dir: Path) -> dict[float, str]:
    index = Layout(data_dir).read_blends()
    if index is None:
        raise ModelError(f"no blends index at {Layout(data_dir).blends_index}; run `empathy train blends` "
                         "first.")
    return index.names()


def parse_model(spec: str, data_dir: Path) -> ModelSpec:
    """`base|full|sensibility|rationality|routed|blend:<w>` -> the served model name (or routing)."""
    if spec == "base":
        return ModelSpec("base", "base")
    if spec in EXPERT_NAMES:
        return ModelSpec(spec, EXPERT_NAMES[spec])
    if spec == "routed":
        return ModelSpec("routed", None)
    if spec == "moe":
        return moe_spec(data_dir)
    if spec.startswith("blend:"):
        try:
            weight = grid_weight(float(spec.partition(":")[2]))
        except ValueError as exc:
            raise ConfigError(f"--model {spec!r}: the blend weight must be a number, e.g. blend:0.5."
                              ) from exc
        names = blend_names(data_dir)
        if weight not in names:
            raise ConfigError(f"--model {spec!r}: no blend with weight {weight:g}; the grid in "
                              f"{Layout(data_dir).blends_index} has {sorted(names)}.")
        return ModelSpec(f"blend:{weight:g}", names[weight])
    raise ConfigError(f"--model {spec!r} is not one of {', '.join(MODEL_CHOICES)}.")


def moe_spec(data_dir: Path) -> ModelSpec:
    """The experts' token-level MoE (`empathy train moe`), served by an engine of its own."""
    moe = Layout(data_dir).moe
    if not (moe / "config.json").is_file():
        raise ConfigError(f"--model moe: no MoE artifact in {moe}; run `empathy train moe` "
                          "first.")
    return ModelSpec("moe", MOE_NAME)


def routed_models(data_dir: Path, contexts: Sequence[Sequence[dict[str, str]]]
                  ) -> tuple[list[str], list[float]]:
    """The router's blend (served name and weight) for each context."""
    from empathy.router import Router

    layout = Layout(data_dir)
    router = Router.load(layout.router)
    names = blend_names(data_dir)
    router.check_blends(list(names), layout.blends_index)
    weights = grid_argmax(router.grid, router.predict_many(contexts))
    return [names[grid_weight(w)] for w in weights], weights


def request_fields(max_tokens: int | None, greedy: bool = True) -> dict[str, Any]:
    """The sampling fields a request sends: `temperature: 0` when greedy, `max_tokens` when given; a request
    with neither takes the server's defaults."""
    fields: dict[str, Any] = {"temperature": 0.0} if greedy else {}
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    return fields


def generate_one(client: Any, model: str, messages: Sequence[dict[str, str]], max_tokens: int | None,
                 greedy: bool = True) -> str:
    response = client.chat.completions.create(model=model, messages=list(messages),
                                              **request_fields(max_tokens, greedy))
    return (response.choices[0].message.content or "").strip()


def generate(client: Any, models: Sequence[str], contexts: Sequence[Sequence[dict[str, str]]],
             max_tokens: int | None, concurrency: int, greedy: bool = True) -> list[str]:
    """One reply per context, each from its own served model (vLLM batches them across LoRAs); greedy by
    default, else with the server's sampling defaults."""
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(generate_one, client, m, c, max_tokens, greedy)
                   for m, c in zip(models, contexts, strict=True)]
        return [f.result() for f in tqdm(futures, desc="generate", unit="reply")]
