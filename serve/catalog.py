"""What the engine serves: base model, experts and blends, read from `<data_dir>` (pure after loading)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from empathy.errors import ModelError
from empathy.layout import BASE_NAME, EXPERT_PREFIX, MOE_NAME, ROUTED_NAME, Layout

EXPERT_WEIGHT = {"sensibility": 1.0, "rationality": 0.0}  # where an expert sits on the blend axis
MOE_ARCHITECTURE = "EmpathyMoeForCausalLM"


@dataclass(frozen=True)
class Catalog:
    """Served adapter names. `blends` maps a grid weight to the vLLM adapter serving it."""

    experts: dict[str, str] = field(default_factory=dict)  # "sensibility" -> "empathy-sensibility"
    blends: dict[float, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # adapter name -> folder (for the engine)
    rank: int = 16
    moe: str | None = None  # folder of the MoE artifact (`empathy train moe`), served as `empathy-moe`

    @property
    def grid(self) -> list[float]:
        return sorted(self.blends)

    def gateway_models(self) -> list[str]:
        moe = [MOE_NAME] if self.moe else []
        return [ROUTED_NAME, *(f"{EXPERT_PREFIX}{e}" for e in sorted(self.experts)), *moe, BASE_NAME]

    def adapter_for_model(self, model: str) -> str | None:
        """The vLLM model name behind a fixed gateway model name (None: not a fixed model)."""
        if model == BASE_NAME or (model == MOE_NAME and self.moe):
            return model
        expert = model.removeprefix(EXPERT_PREFIX)
        if model.startswith(EXPERT_PREFIX) and expert in self.experts:
            return self.experts[expert]
        return None


def _adapter_rank(folder: Path) -> int:
    try:
        return int(json.loads((folder / "adapter_config.json").read_text()).get("r", 0))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}/adapter_config.json is unreadable ({exc}); retrain it.") from exc


def _load_experts(data_dir: Path) -> dict[str, Path]:
    root = Layout(data_dir).experts
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "adapter_config.json").is_file()}


def _load_blends(data_dir: Path) -> tuple[dict[float, str], dict[str, str], int]:
    index = Layout(data_dir).read_blends()
    if index is None:
        return {}, {}, 0
    return index.names(), index.paths(), index.rank or 0


def moe_artifact(data_dir: Path) -> str | None:
    """`<data_dir>/moe` when it holds an MoE artifact (config.json naming the MoE architecture)."""
    folder = Layout(data_dir).moe
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return str(folder.resolve()) if MOE_ARCHITECTURE in (config.get("architectures") or []) else None


def load_catalog(data_dir: Path) -> Catalog:
    """Experts from `<data_dir>/experts/*`, blends from `blends/index.json`. Without blends, the experts
    themselves are the grid's ends (0 = rationality, 1 = sensibility) when they exist."""
    experts = _load_experts(data_dir)
    blends, paths, rank = _load_blends(data_dir)
    names = {name: f"{EXPERT_PREFIX}{name}" for name in experts}
    paths.update({names[name]: str(folder.resolve()) for name, folder in experts.items()})
    if not blends:
        blends = {w: names[e] for e, w in EXPERT_WEIGHT.items() if e in names}
    ranks = [rank, *(_adapter_rank(Path(p)) for p in paths.values())]
    return Catalog(experts=names, blends=blends, paths=paths, rank=max([8, *ranks]),
                   moe=moe_artifact(data_dir))
