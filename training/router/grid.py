"""The blend grid as served: weight -> adapter name and folder, from `<data_dir>/blends/index.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from empathy.errors import ConfigError, ModelError

EXPERT_NAMES = {"sensibility": "empathy-sensibility", "rationality": "empathy-rationality",
                "full": "empathy-full"}


@dataclass(frozen=True)
class GridAdapter:
    weight: float
    name: str  # served LoRA name in vLLM
    path: str  # PEFT folder (for transformers+PEFT scoring and for starting an engine)


def blends_index_path(data_dir: Path) -> Path:
    return data_dir / "blends" / "index.json"


def read_blend_grid(data_dir: Path) -> tuple[list[GridAdapter], int]:
    """The grid adapters (sorted by weight) and their LoRA rank, from the blends index."""
    path = blends_index_path(data_dir)
    if not path.is_file():
        raise ModelError(f"no blends index at {path}; build the blends first with `empathy train blends`.")
    try:
        index = json.loads(path.read_text())
        entries = [GridAdapter(float(b["weight"]), str(b["name"]), str(b["path"])) for b in index["blends"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is malformed ({exc}); rebuild it with `empathy train blends`.") from exc
    return check_adapters(sorted(entries, key=lambda a: a.weight), str(path)), int(index.get("rank", 16))


def check_adapters(adapters: list[GridAdapter], where: str) -> list[GridAdapter]:
    if not adapters:
        raise ConfigError(f"{where}: the blend grid is empty; set EMPATHY_BLEND_GRID (e.g. [0, 0.5, 1]) and "
                          "run `empathy train blends`.")
    bad = [a.weight for a in adapters if not 0.0 <= a.weight <= 1.0]
    if bad:
        raise ConfigError(f"{where}: blend weights must lie in [0, 1]; got {bad}.")
    weights = [a.weight for a in adapters]
    if len(set(weights)) != len(weights):
        raise ConfigError(f"{where}: duplicate blend weights {weights}.")
    return adapters


def expert_grid(data_dir: Path) -> list[GridAdapter]:
    """Fallback grid {0: rationality, 1: sensibility} from the experts alone (blend 1 IS the sens expert)."""
    out = []
    for weight, subset in ((0.0, "rationality"), (1.0, "sensibility")):
        folder = data_dir / "experts" / subset
        if not (folder / "adapter_config.json").is_file():
            raise ModelError(f"expert {subset!r} not found in {folder}; run `empathy train expert --subset "
                             f"{subset}`.")
        out.append(GridAdapter(weight, EXPERT_NAMES[subset], str(folder.resolve())))
    return out
