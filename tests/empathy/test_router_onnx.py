"""The router's encoder on ONNX Runtime gives the torch encoder's embeddings, and its export is cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # exports the encoder (seconds to a minute on a loaded CPU)

TEXTS = ["I just found out my best friend is moving to another country.",
         "My car broke down on the highway and I had to walk home in the rain. It took three hours and I "
         "missed the interview I had prepared for all month.\nThat sounds awful, what happened next?",
         "ok", ""]


def test_onnx_encoder_equals_torch(tmp_path: Path) -> None:
    from empathy.router import ContextEncoder, OnnxContextEncoder

    torch_enc, onnx_enc = ContextEncoder(), OnnxContextEncoder(tmp_path / "cache")
    exported = sorted((tmp_path / "cache").glob("*.onnx"))
    assert len(exported) == 1 and not list((tmp_path / "cache").glob("*.partial"))
    for texts in ([TEXTS[0]], TEXTS):  # one context, and a padded batch of different lengths
        expected, got = torch_enc.encode(texts), onnx_enc.encode(texts)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert onnx_enc.encode([]).shape == (0, expected.shape[1])
    mtime = exported[0].stat().st_mtime_ns
    OnnxContextEncoder(tmp_path / "cache", threads=2)  # another gateway: the cached graph, no new export
    assert exported[0].stat().st_mtime_ns == mtime and len(list((tmp_path / "cache").glob("*.onnx"))) == 1
