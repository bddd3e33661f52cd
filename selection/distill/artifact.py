"""A distilled judge on disk: `<data_dir>/judges/distilled/<NAME>/`.

    distilled.json     format version, artifact version, encoder settings, label source and hash, metrics
    encoder/           the fine-tuned encoder and its tokenizer (Hugging Face folder)
    head.safetensors   the scoring head
    heldout.npz        held-out teacher scores and predictions (judge and baseline), for the report

The artifact version (format version + a hash of the weights) keys the judge's scores in the store, so a
re-fitted judge never reuses the scores of an older one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from empathy.errors import ModelError
from selection.distill.encoder import CrossEncoderScorer, EncoderConfig

FORMAT_VERSION = 1
META_FILE = "distilled.json"


@dataclass
class ArtifactMeta:
    name: str
    version: str
    config: dict[str, Any]
    label_source: str
    label_hash: str
    n_train: int
    n_heldout: int
    metrics: dict[str, dict[str, float]]
    train_seconds: float
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(**self.config)


def artifact_dir(data_dir: Path, name: str) -> Path:
    from empathy.layout import Layout

    return Layout(data_dir).distilled_judge(name)


def _weights_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([folder / "head.safetensors", *sorted((folder / "encoder").glob("*.safetensors"))]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def save_artifact(folder: Path, model: CrossEncoderScorer, tokenizer: Any, meta: ArtifactMeta,
                  heldout: dict[str, np.ndarray]) -> ArtifactMeta:
    """Write weights, then the metadata last (a folder without `distilled.json` is not an artifact)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)
    encoder: Any = model.encoder  # a transformers model
    encoder.save_pretrained(str(folder / "encoder"))
    tokenizer.save_pretrained(str(folder / "encoder"))
    head = {k: v.contiguous() for k, v in model.head.state_dict().items()}
    save_file(head, str(folder / "head.safetensors"))
    np.savez(folder / "heldout.npz", **cast(dict[str, Any], heldout))
    meta.version = f"v{FORMAT_VERSION}-{_weights_hash(folder)}"
    (folder / META_FILE).write_text(json.dumps(meta.__dict__, indent=2), encoding="utf-8")
    return meta


def read_meta(folder: Path) -> ArtifactMeta:
    path = folder / META_FILE
    if not path.is_file():
        raise ModelError(f"no distilled judge at {folder} ({META_FILE} missing); fit one with "
                         f"`empathy select distill fit --name {folder.name}`")
    data = json.loads(path.read_text(encoding="utf-8"))
    found = data.get("format_version")
    if found != FORMAT_VERSION:
        raise ModelError(f"{path} has artifact format version {found!r}, this code reads version "
                         f"{FORMAT_VERSION}; re-fit it: `empathy select distill fit --name {folder.name}`")
    return ArtifactMeta(**data)


def load_artifact(folder: Path) -> tuple[CrossEncoderScorer, Any, ArtifactMeta]:
    """The model (eval mode), its tokenizer and metadata; a wrong format version is a clear error."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    meta = read_meta(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "encoder"))
    encoder = AutoModel.from_pretrained(str(folder / "encoder"))
    model = CrossEncoderScorer(encoder, int(encoder.config.hidden_size), meta.config["loss"])
    model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
    model.eval()
    return model, tokenizer, meta
