"""Our metrics against the numbers the paper's own `empathy/metrics.py` gives on the same replies.

`tests/data/paper_metrics_fixture.json` holds hand-written replies to the first 60 EmpatheticDialogues test
samples and, per case (all 60; a subset without a single trigram match, where BLEU's smoothing epsilon
decides BLEU-3/4), the paper's output computed by running its code unmodified. The references are read
from the shared corpus by sample id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empathy.settings import get_settings
from training.evaluation.bootstrap import point_estimates, run_stats
from training.evaluation.metrics import all_metrics

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "paper_metrics_fixture.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


@pytest.fixture(scope="module")
def pairs(corpus_dir: Path) -> tuple[list[str], list[str]]:
    from selection.corpus import load_corpus

    fixture = json.loads(FIXTURE.read_text())
    references = {s.id: s.response for s in load_corpus(get_settings(corpus_path=corpus_dir),
                                                         fixture["split"]).samples}
    missing = [i for i in fixture["sample_ids"] if i not in references]
    assert not missing, f"sample ids not in the corpus's {fixture['split']} split: {missing[:3]}"
    return fixture["hypotheses"], [references[i] for i in fixture["sample_ids"]]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_metrics_match_the_papers_code(case: dict, pairs: tuple[list[str], list[str]]) -> None:
    hyps, refs = ([side[i] for i in case["indices"]] for side in pairs)
    ours = all_metrics(hyps, refs)
    vectorized = point_estimates(run_stats(hyps, refs))  # what the table's bootstrap starts from
    for key, expected in case["expected_x100"].items():
        assert ours[key] * 100 == pytest.approx(expected, abs=0.01), key
        assert vectorized[key] * 100 == pytest.approx(expected, abs=0.01), key
