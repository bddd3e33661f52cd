"""Where every artifact lives under `<data_dir>`, and the blends index: the one owner of both.

`Layout(data_dir)` names every folder and file the stages write and read (store, models, distilled judges,
subsets, selection reports, experts, blends, router, MoE, eval runs, pipeline records, logs). The blends
index (`blends/index.json`) is written, read, its weights rounded and validated here only; `grid_weight` is
the one rounding of a blend weight, `check_grid` the one validation of a grid read from an artifact,
`grid_argmax` the one "most probable blend".
In `empathy/` because serve (what it serves) and training (what it builds) both ask it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empathy.errors import ConfigError, ModelError

# The names the gateway serves the artifacts under (`serve/catalog.py`), also asked for by training's eval.
BASE_NAME = "base"
ROUTED_NAME = "empathy"
EXPERT_PREFIX = "empathy-"  # + the expert's subset
MOE_NAME = "empathy-moe"  # the experts' token-level MoE (`<data_dir>/moe`), served by an engine of its own

BLENDS_INDEX = "index.json"  # in the blends folder
WEIGHT_DIGITS = 6  # blend weights are compared after rounding to this many digits
EXPERTS = ("sensibility", "rationality", "full")


def grid_weight(weight: float) -> float:
    """A blend weight as the grid keys it (float noise from JSON or arithmetic removed)."""
    return round(float(weight), WEIGHT_DIGITS)


def check_grid(weights: Sequence[float], where: str) -> list[float]:
    """The weights of a grid read from an artifact, unchanged; ConfigError when it is empty, has a weight
    outside [0, 1] (or not finite) or the same weight twice."""
    if not weights:
        raise ConfigError(f"{where}: the blend grid is empty; set EMPATHY_BLEND_GRID (e.g. [0, 0.5, 1]) and "
                          "run `empathy train blends`.")
    bad = [w for w in weights if not (math.isfinite(w) and 0.0 <= w <= 1.0)]
    if bad:
        raise ConfigError(f"{where}: blend weights must lie in [0, 1]; got {bad}.")
    if len({grid_weight(w) for w in weights}) != len(weights):
        raise ConfigError(f"{where}: duplicate blend weights {list(weights)}.")
    return list(weights)


def grid_argmax(grid: Sequence[float], probs: np.ndarray | Sequence[float]) -> list[float]:
    """The most probable blend of each row of `probs`, distributions over `grid` (the first one on a tie);
    one row gives a list of one."""
    rows = np.atleast_2d(np.asarray(probs))
    if rows.shape[1] != len(grid):
        raise ValueError(f"{rows.shape[1]} probabilities for a grid of {len(grid)} blends")
    return [float(grid[int(i)]) for i in np.argmax(rows, axis=1)]


@dataclass(frozen=True)
class BlendEntry:
    weight: float  # rounded by grid_weight
    name: str  # the served LoRA name
    path: Path  # the PEFT folder, absolute


@dataclass(frozen=True)
class BlendsIndex:
    """`blends/index.json`: the blends sorted by weight, their LoRA rank, and what they were built from."""

    rank: int | None  # None: the index does not say
    blends: tuple[BlendEntry, ...]
    meta: dict[str, Any] = field(default_factory=dict)  # experts_hash, grid, experts, base_model

    @property
    def grid(self) -> list[float]:
        return [b.weight for b in self.blends]

    def names(self) -> dict[float, str]:
        """Rounded weight -> served name."""
        return {b.weight: b.name for b in self.blends}

    def paths(self) -> dict[str, str]:
        """Served name -> folder."""
        return {b.name: str(b.path) for b in self.blends}


@dataclass(frozen=True)
class Layout:
    """Every artifact path under `root` (the `data_dir` setting)."""

    root: Path

    def __init__(self, data_dir: Path | str) -> None:
        object.__setattr__(self, "root", Path(data_dir))

    @property
    def store_db(self) -> Path:
        return self.root / "empathy.db"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def distilled_judge(self, name: str) -> Path:
        return self.root / "judges" / "distilled" / name

    @property
    def subsets(self) -> Path:
        return self.root / "subsets"

    def subset(self, name: str) -> Path:
        return self.subsets / f"{name}.jsonl"

    @property
    def subsets_manifest(self) -> Path:
        return self.subsets / "manifest.json"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def experts(self) -> Path:
        return self.root / "experts"

    def expert(self, subset: str) -> Path:
        return self.experts / subset

    @property
    def blends(self) -> Path:
        return self.root / "blends"

    @property
    def blends_index(self) -> Path:
        return self.blends / BLENDS_INDEX

    @property
    def router(self) -> Path:
        return self.root / "router"

    @property
    def moe(self) -> Path:
        return self.root / "moe"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline"

    def pipeline_record(self, step: str) -> Path:
        return self.pipeline / f"{step}.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        """`logs/<name>.log`, its folder created."""
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{name}.log"

    def read_blends(self) -> BlendsIndex | None:
        """The blends index, None when there is none; ModelError when it is malformed, ConfigError when its
        grid is invalid. Relative paths are taken from the data dir, else from the index's folder."""
        path = self.blends_index
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            entries = [BlendEntry(grid_weight(row["weight"]), str(row["name"]), self._blend_path(row["path"]))
                       for row in data["blends"]]
            rank = int(data["rank"]) if "rank" in data else None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path} is not a blends index ({exc}); rebuild it with `empathy train blends`."
                             ) from exc
        entries.sort(key=lambda e: e.weight)
        check_grid([e.weight for e in entries], str(path))
        meta = {k: v for k, v in data.items() if k not in ("rank", "blends")}
        return BlendsIndex(rank, tuple(entries), meta)

    def _blend_path(self, value: str) -> Path:
        path = Path(value)
        if not path.is_absolute():
            path = self.root / path if (self.root / path).exists() else self.blends / path
        return path.resolve()

    def write_blends(self, index: dict[str, Any]) -> Path:
        return write_blends_index(self.blends, index)


def write_blends_index(blends_dir: Path, index: dict[str, Any]) -> Path:
    """Write `<blends_dir>/index.json` atomically (readers never see half a file); its path."""
    path = Path(blends_dir) / BLENDS_INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(index, indent=2))
    staging.replace(path)
    return path
