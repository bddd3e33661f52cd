"""The router learns only from samples the experts never trained on: an expert's seeded `--limit` pick of
its subset is excluded, not the whole subset file (a whole judged split would leave the router nothing)."""

from __future__ import annotations

import json
from pathlib import Path

from training.router.train import subset_ids
from training.sft_data import file_sha256, take


def write_subset(path: Path, ids: list[str]) -> list[dict[str, object]]:
    rows = [{"id": i, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": i}]}
            for i in ids]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_only_the_trained_pick_is_excluded(tmp_path: Path) -> None:
    sens = tmp_path / "subsets" / "sensibility.jsonl"
    rows = write_subset(sens, [f"s{i}" for i in range(10)])
    write_subset(tmp_path / "subsets" / "discard.jsonl", ["d1", "d2"])  # no expert: counted whole
    meta = tmp_path / "experts" / "sensibility" / "empathy_meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"subset_sha256": file_sha256(sens), "settings": {"limit": 3, "seed": 7}}))
    picked = {str(r["id"]) for r in take(rows, 3, 7)}
    assert subset_ids(tmp_path) == picked | {"d1", "d2"}

    write_subset(sens, [f"s{i}" for i in range(11)])  # the subset changed since the expert was trained
    assert subset_ids(tmp_path) == {f"s{i}" for i in range(11)} | {"d1", "d2"}
