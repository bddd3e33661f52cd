"""`empathy pipeline --profile smoke` end to end on the tiny model, through the real CLI: the first run runs
every step, a second run skips every step, and editing one subset reruns exactly the steps downstream of it.

Read through the pipeline's public output only (its summary table and `pipeline/<step>.json` records), so
the test holds when steps are added: a step it does not know must be downstream of the edit to rerun.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROW = re.compile(r"^\| (?P<step>[\w:.-]+) \| (?P<status>ran|skipped) \|", re.MULTILINE)
# Steps the edited subset cannot affect: upstream of it, or siblings reading other subsets.
UNAFFECTED = {"base-model", "judge", "select", "expert-rationality", "expert-full"}
DOWNSTREAM = {"expert-sensibility", "blends", "router"}


def run_pipeline(data_dir: Path, env: dict[str, str], scores: Path) -> dict[str, str]:
    """One `empathy pipeline` run; returns step -> ran|skipped from its summary table."""
    cmd = [sys.executable, "-m", "empathy", "pipeline", "--profile", "smoke", "--data-dir", str(data_dir),
           "--scores", str(scores)]
    done = subprocess.run(cmd, cwd=data_dir, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    steps = {m["step"]: m["status"] for m in ROW.finditer(done.stdout)}
    assert steps, f"no summary table in the output:\n{done.stdout[-4000:]}"
    return steps


def records(data_dir: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in (data_dir / "pipeline").glob("*.json")}


def test_smoke_pipeline_runs_skips_and_reruns_downstream(tmp_path: Path, tiny_model_dir: Path,
                                                         corpus_dir: Path, paper_scores_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {**os.environ, "EMPATHY_BASE_MODEL": str(tiny_model_dir), "EMPATHY_CORPUS_PATH": str(corpus_dir),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("EMPATHY_DATA_DIR", None)

    first = run_pipeline(data_dir, env, paper_scores_path)
    assert set(first.values()) == {"ran"}, first
    assert DOWNSTREAM | {"select"} <= set(first)
    assert set(records(data_dir)) == set(first)  # every step recorded its input fingerprint
    assert (data_dir / "router" / "router.json").is_file() and (data_dir / "blends" / "index.json").is_file()
    recorded = records(data_dir)

    second = run_pipeline(data_dir, env, paper_scores_path)
    assert second == dict.fromkeys(first, "skipped")
    assert records(data_dir) == recorded  # a skipped step rewrites nothing

    subset = data_dir / "subsets" / "sensibility.jsonl"
    lines = subset.read_text().splitlines(keepends=True)
    assert len(lines) > 1
    subset.write_text("".join(lines[:-1]))  # one training example fewer
    third = run_pipeline(data_dir, env, paper_scores_path)
    ran = {step for step, status in third.items() if status == "ran"}
    assert ran >= DOWNSTREAM, third
    assert ran == set(third) - UNAFFECTED, third  # everything downstream (a later eval step too), no more
    after = records(data_dir)
    assert {s for s in after if after[s]["fingerprint"] != recorded[s]["fingerprint"]} == ran
