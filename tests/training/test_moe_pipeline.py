"""The `moe` step of `empathy pipeline` (after the experts, its gates only) and the `moe` row of
`empathy eval` / `empathy eval table` (replies from `empathy-moe` through a real vLLM engine of its own)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from empathy.layout import Layout
from empathy.settings import Settings, get_settings
from tests.conftest import free_port


@pytest.fixture
def data_dir(tmp_path: Path, tiny_artifacts: Path) -> Path:
    """A data_dir of our own (moe/, pipeline/ and eval/ are written here) linking to the tiny experts; the
    `full` subset is a copy of the sensibility one."""
    folder = tmp_path / "data"
    (folder / "subsets").mkdir(parents=True)
    (folder / "experts").symlink_to(tiny_artifacts / "experts", target_is_directory=True)
    (folder / "blends").symlink_to(tiny_artifacts / "blends", target_is_directory=True)
    shutil.copy(tiny_artifacts / "subsets" / "sensibility.jsonl", folder / "subsets" / "full.jsonl")
    return folder


@pytest.fixture
def settings(data_dir: Path, tiny_model_dir: Path, corpus_dir: Path) -> Settings:
    return get_settings(data_dir=data_dir, base_model=str(tiny_model_dir), corpus_path=corpus_dir,
                        moe_vllm_port=free_port(), vllm_extra_args=["--enforce-eager"], vllm_kvcache_gib=1,
                        vllm_max_model_len=512, eval_max_tokens=8)


def test_every_profile_plans_the_moe_after_the_router(settings: Settings, paper_scores_path: Path) -> None:
    from training.moe.pipeline_step import PROFILE_LIMITS
    from training.pipeline import PROFILES, plan

    assert set(PROFILE_LIMITS) == set(PROFILES)
    for profile in PROFILES.values():
        steps = {s.name: s for s in plan(settings, profile, None, paper_scores_path, None)}
        names = list(steps)
        # After the router; last, so the eval table (the release's) never waits for the gates.
        assert names.index("moe") > names.index("router") and names[-1] == "moe", names
        limit, max_steps = PROFILE_LIMITS[profile.name]
        assert (steps["moe"].params["limit"], steps["moe"].params["max_steps"]) == (limit, max_steps)
    standard = PROFILE_LIMITS["standard"][0]
    assert standard == PROFILES["standard"].expert_limit  # the full expert's pick: never a router sample


def test_moe_step_trains_then_skips(settings: Settings, data_dir: Path) -> None:
    from empathy.moe.artifact import META_FILE
    from training.moe.pipeline_step import moe_step
    from training.pipeline import run_steps

    assert run_steps(data_dir, [moe_step(settings, "smoke")])[0].status == "ran"
    meta = json.loads((data_dir / "moe" / META_FILE).read_text())
    assert meta["steps"] == 2 and meta["settings"]["limit"] == 16
    assert run_steps(data_dir, [moe_step(settings, "smoke")])[0].status == "skipped"
    (data_dir / "pipeline" / "moe.json").unlink()  # the record lost: the artifact is up to date, kept
    assert run_steps(data_dir, [moe_step(settings, "smoke")])[0].status == "ran"
    assert json.loads((data_dir / "moe" / META_FILE).read_text())["finished_at"] == meta["finished_at"]


def test_eval_model_moe_needs_the_artifact(settings: Settings) -> None:
    from empathy.errors import ConfigError
    from training.evaluation.generate import parse_model

    with pytest.raises(ConfigError, match="empathy train moe"):
        parse_model("moe", settings.data_dir)


def test_eval_table_skips_files_that_are_not_runs(settings: Settings) -> None:
    from training.evaluation.run import load_runs

    folder = Layout(settings.data_dir).eval
    folder.mkdir()
    (folder / "moe-analysis.json").write_text(json.dumps({"moe": "x", "heldout": {}}))
    (folder / "base-test-n1.json").write_text(json.dumps({"model": "base", "outputs": []}))
    assert [r["model"] for r in load_runs(settings.data_dir)] == ["base"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_eval_moe_row_from_its_own_engine(settings: Settings, data_dir: Path, tiny_model_dir: Path) -> None:
    """`empathy eval --model base,moe`: the base engine first, then the MoE's own (one at a time); the table
    has a `moe` row with intervals, and a paired comparison against base works."""
    from training.evaluation.run import load_runs, run_evals
    from training.evaluation.table import render_comparisons, render_table
    from training.moe.train import compose

    experts = [(s, data_dir / "experts" / s) for s in ("sensibility", "rationality")]
    compose(str(tiny_model_dir), experts, data_dir / "moe")
    settings = settings.model_copy(update={"vllm_port": free_port()})
    paths = run_evals(settings, ["base", "moe"], "test", 3, None)
    run = json.loads(paths[1].read_text())
    assert run["model"] == "moe" and run["served"] == {"empathy-moe": 3} and len(run["outputs"]) == 3
    assert all(isinstance(o["reply"], str) for o in run["outputs"])  # a random tiny model may say nothing
    table = render_table(load_runs(data_dir), resamples=50)
    assert "| moe | test | 3 |" in table
    assert "moe - base" in render_comparisons(load_runs(data_dir), [("moe", "base")], resamples=50)
