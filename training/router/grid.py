"""The blend grid as served: weight -> adapter name and folder, from the blends index (`Layout`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from empathy.errors import ModelError
from empathy.layout import EXPERT_PREFIX, EXPERTS, Layout

EXPERT_NAMES = {subset: f"{EXPERT_PREFIX}{subset}" for subset in EXPERTS}
DEFAULT_RANK = 16  # an index that does not record its LoRA rank


@dataclass(frozen=True)
class GridAdapter:
    weight: float
    name: str  # served LoRA name in vLLM
    path: str  # PEFT folder (for transformers+PEFT scoring and for starting an engine)


def read_blend_grid(data_dir: Path) -> tuple[list[GridAdapter], int]:
    """The grid adapters (sorted by weight) and their LoRA rank, from the blends index."""
    layout = Layout(data_dir)
    index = layout.read_blends()
    if index is None:
        raise ModelError(f"no blends index at {layout.blends_index}; build the blends first with "
                         "`empathy train blends`.")
    adapters = [GridAdapter(b.weight, b.name, str(b.path)) for b in index.blends]
    return adapters, DEFAULT_RANK if index.rank is None else index.rank


def expert_grid(data_dir: Path) -> list[GridAdapter]:
    """Fallback grid {0: rationality, 1: sensibility} from the experts alone (blend 1 IS the sens expert)."""
    layout = Layout(data_dir)
    out = []
    for weight, subset in ((0.0, "rationality"), (1.0, "sensibility")):
        folder = layout.expert(subset)
        if not (folder / "adapter_config.json").is_file():
            raise ModelError(f"expert {subset!r} not found in {folder}; run `empathy train expert --subset "
                             f"{subset}`.")
        out.append(GridAdapter(weight, EXPERT_NAMES[subset], str(folder.resolve())))
    return out
