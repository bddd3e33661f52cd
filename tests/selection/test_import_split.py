"""The paper's released scores: every evaluation variant parsed, >= 99% matched, the paper's fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy.errors import DataError
from selection.commands import import_scores, report, split
from selection.importers import parse_evaluation

VARIANTS = [
    "Evaluation Form (scores ONLY):\n- Rationality: 8\n- Sensibility: 5",
    "- Rationality: 8\n- Sensibility: 5",
    "**Evaluation Form (scores ONLY):**\n\n- Rationality: 8\n- Sensibility: 5",
    "    Evaluation Form (scores ONLY):\n    - Rationality: 8\n    - Sensibility: 5\n   \n",
    "- Sensibility: 5\n- Rationality: 8",
    "- **Rationality**: 8\n- **Sensibility**: 5  ",
]


@pytest.mark.parametrize("text", VARIANTS)
def test_every_evaluation_variant_parses(text: str) -> None:
    assert parse_evaluation(text) == (5.0, 8.0)


def test_unparsable_evaluation_gives_none() -> None:
    assert parse_evaluation("I would rate it highly.") is None


def _common(corpus_dir: Path, tmp_path: Path) -> list[str]:
    return ["--split", "valid", "--corpus", str(corpus_dir), "--data-dir", str(tmp_path)]


def test_import_matches_and_split_reproduces_paper_fractions(
    corpus_dir: Path, paper_scores_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = _common(corpus_dir, tmp_path)
    assert import_scores.main([str(paper_scores_path), "--json", *common]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["items"] == 5734 and imported["matched"] / 5734 >= 0.99
    parts = ("ambiguous", "unmatched", "matched", "duplicates", "unparsable")
    assert sum(imported[part] for part in parts) == 5734

    out = tmp_path / "subsets"
    assert split.main(["--judge", "efficient-empathy-chatgpt", "--out", str(out), "--json", *common]) == 0
    manifest = json.loads(capsys.readouterr().out)
    fractions = manifest["fractions"]
    assert fractions["sensibility"] == pytest.approx(0.606, abs=0.005)
    assert fractions["discard"] == pytest.approx(0.079, abs=0.005)
    # The rule partitions the scored replies, so R is what is left: 31.5% (R > 5 in the released file).
    rest = 1 - fractions["sensibility"] - fractions["discard"]
    assert fractions["rationality"] == pytest.approx(rest, abs=1e-3)
    assert manifest["counts"]["full"] == imported["matched"]
    assert set(manifest["files"]) == {f"{n}.jsonl" for n in ("sensibility", "rationality", "full", "discard")}
    row = json.loads((out / "sensibility.jsonl").read_text().splitlines()[0])
    assert row["messages"][-1]["role"] == "assistant" and row["sensibility"] > 5 > row["rationality"]

    assert report.main(["--judge", "efficient-empathy-chatgpt", "--json", "--out", str(tmp_path / "r"),
                        *common]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sum(map(sum, summary["joint_histogram"]["counts"])) == imported["matched"]
    assert len(summary["per_emotion"]) == 32
    assert (tmp_path / "r" / "score_heatmap.png").stat().st_size > 1000
    assert (tmp_path / "r" / "emotion_fractions.png").stat().st_size > 1000


def test_bad_scores_files_are_clear_errors(corpus_dir: Path, tmp_path: Path) -> None:
    not_json = tmp_path / "scores.json"
    not_json.write_text("context,response\n")
    with pytest.raises(DataError, match="not a JSON file"):
        import_scores.main([str(not_json), *_common(corpus_dir, tmp_path)])
    with pytest.raises(DataError, match="unknown scores format"):
        import_scores.main([str(not_json), "--format", "esconv", *_common(corpus_dir, tmp_path)])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"a": 1}))
    with pytest.raises(DataError, match="efficient-empathy format"):
        import_scores.main([str(wrong), *_common(corpus_dir, tmp_path)])


def test_split_without_scores_names_the_store(corpus_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no stored scores of judge 'nobody'"):
        split.main(["--judge", "nobody", *_common(corpus_dir, tmp_path)])
