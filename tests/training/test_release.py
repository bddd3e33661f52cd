"""The release: packed from a data dir in bf16 with a manifest, verified by hashes, installed into a data dir
without experts (blends built there), never over locally trained experts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from empathy.errors import ModelError
from empathy.router import RouterWeights, save_artifact
from training.release import (
    SOURCE_MARK,
    has_local_experts,
    install_release,
    pack_release,
    verify_release,
)

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.fixture
def pipeline_dir(tmp_path: Path, tiny_artifacts: Path) -> Path:
    """A data dir as the pipeline leaves it: three experts (full = a copy of sensibility) and a router."""
    d = tmp_path / "data"
    copies = (("sensibility", "sensibility"), ("rationality", "rationality"), ("full", "sensibility"))
    for name, src in copies:
        shutil.copytree(tiny_artifacts / "experts" / src, d / "experts" / name)
    rng = np.random.default_rng(0)
    weights = RouterWeights(np.zeros(389), np.ones(389), rng.normal(size=(389, 5)), np.zeros(5))
    save_artifact(d / "router", GRID, weights, {"n_samples": 3})
    return d


def test_pack_verify_install(pipeline_dir: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    release = tmp_path / "release"
    manifest = pack_release(pipeline_dir, release, {"command": "empathy pipeline --profile smoke"},
                            "smollm2-135m-instruct")
    assert manifest["command"] == "empathy pipeline --profile smoke" and manifest["bytes"] < 25 * 2**20
    tensors = load_file(str(release / "experts" / "sensibility" / "adapter_model.safetensors"))
    assert {str(t.dtype) for t in tensors.values()} == {"torch.bfloat16"}
    config = json.loads((release / "experts" / "full" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct"  # no machine-local path
    assert verify_release(release)["files"] == manifest["files"]

    target = tmp_path / "fresh"
    install_release(release, target, str(tiny_model_dir), GRID)
    index = json.loads((target / "blends" / "index.json").read_text())
    assert [b["weight"] for b in index["blends"]] == GRID
    assert (target / "router" / "router.json").is_file() and (target / "experts" / SOURCE_MARK).is_file()
    assert not has_local_experts(target)  # installed from the release: training replaces them
    install_release(release, target, str(tiny_model_dir), GRID)  # a second `empathy up` is fine


def test_tampered_release_is_refused(pipeline_dir: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    release = tmp_path / "release"
    pack_release(pipeline_dir, release, {}, "smollm2-135m-instruct")
    weights = release / "experts" / "rationality" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="does not match its manifest"):
        install_release(release, tmp_path / "fresh", str(tiny_model_dir), GRID)
    assert not (tmp_path / "fresh" / "experts").exists()


def test_local_experts_take_precedence(pipeline_dir: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    release = tmp_path / "release"
    pack_release(pipeline_dir, release, {}, "smollm2-135m-instruct")
    assert has_local_experts(pipeline_dir)
    before = (pipeline_dir / "experts" / "sensibility" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ModelError, match="take precedence"):
        install_release(release, pipeline_dir, str(tiny_model_dir), GRID)
    assert (pipeline_dir / "experts" / "sensibility" / "adapter_model.safetensors").read_bytes() == before


def test_pack_needs_the_pipeline_outputs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="run `empathy pipeline"):
        pack_release(tmp_path, tmp_path / "release", {}, "x")
