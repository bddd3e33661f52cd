"""The artifact layout and the blends index: written, read, rounded and validated in `empathy/layout.py` only,
and what serve's catalog and training's evaluation read from it is the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from empathy.errors import ConfigError, ModelError
from empathy.layout import Layout, check_grid, grid_argmax, grid_weight
from serve.catalog import load_catalog
from training.evaluation.generate import blend_names
from training.router.grid import read_blend_grid


def _index(tmp_path: Path, weights: list[float], relative: bool = False) -> Layout:
    layout = Layout(tmp_path)
    rows = []
    for i, weight in enumerate(weights):
        folder = layout.blends / f"blend-{i}"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 16}))
        rows.append({"weight": weight, "name": f"blend-{i}",
                     "path": f"blend-{i}" if relative else str(folder.resolve())})
    layout.write_blends({"rank": 16, "experts_hash": "ab", "blends": rows})
    return layout


def test_paths_are_under_the_data_dir(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert layout.blends_index == tmp_path / "blends" / "index.json"
    assert layout.subset("full") == tmp_path / "subsets" / "full.jsonl"
    assert layout.expert("sensibility") == tmp_path / "experts" / "sensibility"
    assert layout.store_db == tmp_path / "empathy.db"
    assert layout.distilled_judge("j") == tmp_path / "judges" / "distilled" / "j"
    assert layout.reports == tmp_path / "reports" and layout.moe == tmp_path / "moe"
    assert layout.log("vllm") == tmp_path / "logs" / "vllm.log" and layout.logs.is_dir()


def test_blends_index_round_trip_rounds_and_sorts(tmp_path: Path) -> None:
    layout = _index(tmp_path, [0.75, 0.1 + 0.2, 0.0], relative=True)
    index = layout.read_blends()
    assert index is not None
    assert index.grid == [0.0, 0.3, 0.75]  # 0.1 + 0.2 = 0.30000000000000004 rounded once
    assert index.rank == 16 and index.meta == {"experts_hash": "ab"}
    assert index.paths()["blend-1"] == str((tmp_path / "blends" / "blend-1").resolve())  # relative: blends/
    assert not list(layout.blends.glob(".*.tmp"))  # written atomically


def test_serve_and_training_read_the_same_grid(tmp_path: Path) -> None:
    _index(tmp_path, [1.0, 0.5, 0.0])
    catalog = load_catalog(tmp_path)
    assert catalog.blends == blend_names(tmp_path) == {0.0: "blend-2", 0.5: "blend-1", 1.0: "blend-0"}
    adapters, rank = read_blend_grid(tmp_path)  # the router's trainer
    assert {a.weight: a.name for a in adapters} == catalog.blends and rank == 16
    assert [a.path for a in adapters] == [catalog.paths[a.name] for a in adapters]


def test_no_index_is_none_a_broken_one_says_how_to_fix_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert layout.read_blends() is None
    with pytest.raises(ModelError, match="empathy train blends"):
        read_blend_grid(tmp_path)
    layout.blends.mkdir()
    layout.blends_index.write_text(json.dumps({"blends": [{"weight": 0.5}]}))
    with pytest.raises(ModelError, match="empathy train blends"):
        layout.read_blends()


@pytest.mark.parametrize("weights", [[], [0.5, 0.5000000001], [0.0, 1.5], [float("nan")]])
def test_bad_grids_are_refused(weights: list[float]) -> None:
    with pytest.raises(ConfigError):
        check_grid(weights, "test")


def test_argmax_is_numpy_argmax_over_the_grid() -> None:
    grid = [0.0, 0.25, 0.5]
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4], [0.1, 0.1, 0.8]])
    assert grid_argmax(grid, probs) == [0.25, 0.0, 0.5]  # a tie goes to the first, as np.argmax
    assert grid_argmax(grid, [0.1, 0.6, 0.3]) == [0.25]
    assert grid_weight(np.float64(0.1) * 3) == 0.3
    with pytest.raises(ValueError):
        grid_argmax(grid, [0.5, 0.5])
