"""Read two expert folders, write the blend grid as PEFT folders and `blends/index.json`.

Every check runs before the first file is written. Each blend is written to a hidden temporary folder and
renamed into place, and a blend that already exists under its name (weight + content hash of the experts)
is reused as is: same name, same tensors.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from empathy.errors import ModelError
from empathy.layout import write_blends_index
from training.blends import (
    blend_config,
    blend_name,
    blend_tensors,
    check_compatible,
    experts_hash,
    lora_scaling,
    validate_grid,
)
from training.sft_data import file_sha256

log = logging.getLogger("empathy.blends")

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class LoadedExpert:
    folder: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    digest: str
    scaling: float


def load_expert(folder: Path, subset: str) -> LoadedExpert:
    from safetensors.torch import load_file

    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ModelError(f"the {subset} expert is missing in {folder} (needs {CONFIG_FILE} and "
                         f"{WEIGHTS_FILE}); run `empathy train expert --subset {subset}` first.")
    config = json.loads((folder / CONFIG_FILE).read_text())
    return LoadedExpert(folder=folder, config=config, tensors=load_file(str(folder / WEIGHTS_FILE)),
                        digest=file_sha256(folder / WEIGHTS_FILE), scaling=lora_scaling(config, str(folder)))


def same_model(left: str | None, right: str | None) -> bool:
    """Two base-model references name the same model: equal ids, or folders that resolve to one path."""
    if not left or not right:
        return True  # an adapter without the field cannot be checked by name; shapes still are
    if Path(left).exists() and Path(right).exists():
        return Path(left).resolve() == Path(right).resolve()
    return left == right


def check_pair(sens: LoadedExpert, rat: LoadedExpert, base_model: str | None) -> None:
    """ModelError when the experts do not share one base model and one set of target modules."""
    base_s = sens.config.get("base_model_name_or_path")
    base_r = rat.config.get("base_model_name_or_path")
    if not same_model(base_s, base_r):
        raise ModelError(f"the experts are LoRAs of different base models: {base_s!r} ({sens.folder}) vs "
                         f"{base_r!r} ({rat.folder}); retrain one of them on the same EMPATHY_BASE_MODEL.")
    if not same_model(base_s, base_model):
        raise ModelError(f"the experts were trained on {base_s!r} but the base model is {base_model!r}; set "
                         "EMPATHY_BASE_MODEL to the experts' base model or retrain them.")
    if set(sens.config.get("target_modules") or []) != set(rat.config.get("target_modules") or []):
        targets = [sorted(e.config.get("target_modules") or []) for e in (sens, rat)]
        raise ModelError(f"the experts have different target modules: {targets[0]} vs {targets[1]}; "
                         "train both with the same EMPATHY_LORA_TARGETS.")
    check_compatible(sens.tensors, rat.tensors)


def write_adapter(folder: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write a PEFT folder under a temporary name and rename it, so only complete adapters appear."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_blends(sens_dir: Path, rat_dir: Path, blends_dir: Path, grid: list[float],
                 base_model: str | None = None) -> dict[str, Any]:
    """Build every blend of the grid (reusing those already built) and write `blends/index.json`."""
    weights = validate_grid(grid)
    sens, rat = load_expert(sens_dir, "sensibility"), load_expert(rat_dir, "rationality")
    check_pair(sens, rat, base_model)
    pair_hash = experts_hash(sens.digest, sens.scaling, rat.digest, rat.scaling)
    rank = int(sens.config["r"]) + int(rat.config["r"])
    entries = []
    for weight in tqdm(weights, desc="blends", unit="blend"):
        name = blend_name(weight, pair_hash)
        folder = blends_dir / name
        if not (folder / WEIGHTS_FILE).is_file():
            tensors = blend_tensors(sens.tensors, sens.scaling, rat.tensors, rat.scaling, weight)
            write_adapter(folder, blend_config(sens.config, rank), tensors)
        entries.append({"weight": weight, "name": name, "path": str(folder.resolve())})
    index = {"rank": rank, "experts_hash": pair_hash, "grid": weights,
             "experts": {"sensibility": str(sens_dir.resolve()), "rationality": str(rat_dir.resolve())},
             "base_model": sens.config.get("base_model_name_or_path"), "blends": entries}
    write_blends_index(blends_dir, index)
    return index
