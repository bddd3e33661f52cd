"""The router's encoder on ONNX Runtime: its graphs give the torch encoder's embeddings (float32) or close
ones (int8), are built once and cached, its tokenizer gives the transformers tokenizer's ids, and the
release router makes the same choices on every runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TEXTS = ["I just found out my best friend is moving to another country.",
         "My car broke down on the highway and I had to walk home in the rain. It took three hours and I "
         "missed the interview I had prepared for all month.\nThat sounds awful, what happened next?",
         "ok", ""]
LONG = " ".join(["Crème brûlée, naïve café owners and résumés!"] * 60)  # > 256 tokens: truncated
REPO = Path(__file__).resolve().parents[2]
# Contexts of every kind for the release router (feeling, practical, several turns).
CONVERSATIONS = [
    [{"role": "user", "content": "My grandmother passed away last night and I can't stop crying."}],
    [{"role": "user", "content": "Which bus goes to the airport from downtown?"}],
    [{"role": "user", "content": "I finally got the job I wanted for years!"}],
    [{"role": "user", "content": "I'm so nervous about my exam tomorrow."},
     {"role": "assistant", "content": "That's understandable. What subject is it?"},
     {"role": "user", "content": "Chemistry, and I failed the last one."}],
    [{"role": "user", "content": "My neighbour keeps parking in my spot, what should I do?"}],
    [{"role": "user", "content": "We adopted a puppy today."}],
]


@pytest.mark.slow  # exports, fuses and quantises the encoder (a minute on a loaded CPU)
def test_onnx_graphs_match_torch_and_are_cached(tmp_path: Path) -> None:
    from empathy.router import ContextEncoder, OnnxContextEncoder

    cache = tmp_path / "cache"
    torch_enc = ContextEncoder()
    encoders = {runtime: OnnxContextEncoder(cache, runtime=runtime) for runtime in ("onnx", "onnx-int8")}
    graphs = sorted(cache.iterdir())
    assert len(graphs) == 3 and all(g.suffix == ".onnx" for g in graphs)  # export, fused, int8; no partials
    for texts in ([TEXTS[0]], TEXTS):  # one context, and a padded batch of different lengths
        expected = torch_enc.encode(texts)
        got = encoders["onnx"].encode(texts)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
    for text in TEXTS:  # int8: close to torch's embedding (cosine, both L2-normalised; "ok": 0.974)
        cosine = float(encoders["onnx-int8"].encode([text])[0] @ torch_enc.encode([text])[0])
        assert cosine > 0.95, (text, cosine)
    assert encoders["onnx-int8"].encode([]).shape == (0, expected.shape[1])
    mtimes = {g: g.stat().st_mtime_ns for g in graphs}
    OnnxContextEncoder(cache, threads=2, runtime="onnx-int8")  # another gateway: the cached graphs
    assert {g: g.stat().st_mtime_ns for g in sorted(cache.iterdir())} == mtimes


def test_fast_tokenizer_gives_the_transformers_ids() -> None:
    from transformers import AutoTokenizer

    from empathy.router import FastTokenizer, encoder_path

    reference = AutoTokenizer.from_pretrained(encoder_path())
    fast = FastTokenizer(encoder_path(), max_length=256)
    for texts in ([TEXTS[1]], [LONG], [""], [*TEXTS, LONG]):
        expected = reference(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
        got = fast(texts)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(got[name], expected[name])
            assert got[name].dtype == np.int64
    assert fast([LONG])["input_ids"].shape == (1, 256)


@pytest.fixture(scope="module")
def encoders() -> dict[str, Any]:
    """The encoder of every runtime (the graphs come from the user's cache, built on first use as the
    gateway builds them)."""
    from empathy.router import RUNTIMES, text_encoder
    from serve.state import encoder_cache

    return {runtime: text_encoder(runtime, encoder_cache()) for runtime in RUNTIMES}


def release_probs(encoder: Any, recheck: Any = None) -> np.ndarray:
    from empathy.router import Router

    router = Router.load(REPO / "release" / "router", encoder, recheck)
    return np.array([router.predict(c) for c in CONVERSATIONS])


def test_release_router_chooses_alike_on_every_runtime(encoders: dict[str, Any]) -> None:
    """The release router on torch (as trained), ONNX float32, and int8 as the gateway runs it (near ties
    re-checked in float32): the same blends; int8 alone: close probabilities."""
    from empathy.router import Recheck
    from empathy.settings import get_settings

    grid = np.asarray(json.loads((REPO / "release" / "router" / "router.json").read_text())["grid"])
    expected = release_probs(encoders["torch"])
    assert len(set(expected.argmax(1).tolist())) > 1  # the contexts do not all get one blend
    exact = release_probs(encoders["onnx"])
    assert exact.argmax(1).tolist() == expected.argmax(1).tolist()
    np.testing.assert_allclose(exact, expected, atol=1e-4)
    margin = get_settings().router_int8_margin
    served = release_probs(encoders["onnx-int8"], Recheck(encoders["onnx"], margin))
    assert served.argmax(1).tolist() == expected.argmax(1).tolist()
    np.testing.assert_allclose(release_probs(encoders["onnx-int8"]) @ grid, expected @ grid, atol=0.03)


def test_recheck_routes_near_ties_on_the_exact_encoder(encoders: dict[str, Any]) -> None:
    from empathy.router import Recheck, top2_margin

    int8, exact = release_probs(encoders["onnx-int8"]), release_probs(encoders["onnx"])
    np.testing.assert_array_equal(release_probs(encoders["onnx-int8"], Recheck(encoders["onnx"], 1.0)), exact)
    margin = float(np.median(top2_margin(int8)))  # about half the contexts are near ties at this margin
    near = top2_margin(int8) < margin
    mixed = release_probs(encoders["onnx-int8"], Recheck(encoders["onnx"], margin))
    np.testing.assert_array_equal(mixed[near], exact[near])
    np.testing.assert_array_equal(mixed[~near], int8[~near])
