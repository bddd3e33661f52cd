"""The distilled judge end to end on a small slice: fit (CLI), artifact round trip, resumable scoring through
the real runner and a real SQLite store, the report, and clear errors for bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from empathy.cli import main as empathy_main
from empathy.errors import ConfigError, DataError, ModelError
from empathy.settings import Settings, get_settings
from selection.corpus import load_corpus
from selection.distill.artifact import META_FILE, artifact_dir, read_meta
from selection.sample import Sample

NAME = "tiny"
TINY_FIT = ["--epochs", "1", "--max-len", "48", "--limit", "200", "--threads", "1", "--name", NAME,
            "--kind", "cross-encoder"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distill")


@pytest.fixture(scope="module")
def settings(data_dir: Path, corpus_dir: Path) -> Settings:
    return get_settings(data_dir=data_dir, corpus_path=corpus_dir, distill_name=NAME, distill_threads=1,
                        distill_kind="cross-encoder",
                        distill_epochs=1, distill_max_len=48)


@pytest.fixture(scope="module")
def valid_samples(settings: Settings) -> list[Sample]:
    return load_corpus(settings, "valid").samples


@pytest.fixture(scope="module")
def fitted(data_dir: Path, corpus_dir: Path, paper_scores_path: Path) -> Path:
    """The paper's scores imported into the store, then a judge fitted on 200 of them through the CLI."""
    common = ["--split", "valid", "--corpus", str(corpus_dir), "--data-dir", str(data_dir)]
    assert empathy_main(["select", "import-scores", str(paper_scores_path), *common]) == 0
    assert empathy_main(["select", "distill", "fit", *common, *TINY_FIT]) == 0
    return artifact_dir(data_dir, NAME)


@pytest.mark.slow
def test_fit_writes_a_versioned_artifact_with_heldout_metrics(fitted: Path) -> None:
    meta = read_meta(fitted)
    assert meta.version.startswith("v1-") and len(meta.label_hash) == 16
    assert meta.label_source.startswith("store:efficient-empathy-chatgpt@")
    assert meta.n_train + meta.n_heldout == 200 and meta.n_heldout > 0
    assert set(meta.metrics) == {"distilled", "baseline_ridge_minilm"}
    for metrics in meta.metrics.values():
        assert -1.0 <= metrics["spearman_s"] <= 1.0 and 0.0 <= metrics["bucket_accuracy"] <= 1.0
    assert (fitted / "encoder" / "model.safetensors").is_file() and (fitted / "head.safetensors").is_file()


@pytest.mark.slow
def test_artifact_round_trip_gives_the_same_predictions(fitted: Path, valid_samples: list[Sample]) -> None:
    from selection.distill.scorer import DistilledScorer

    heldout = np.load(fitted / "heldout.npz")
    by_id = {s.id: s for s in valid_samples}
    samples = [by_id[str(i)] for i in heldout["ids"]]
    pred = DistilledScorer.load(fitted).predict_samples(samples, batch_size=7)
    np.testing.assert_allclose(pred, heldout["pred"], atol=1e-4)


@pytest.mark.slow
async def test_scoring_resumes_without_rescoring(fitted: Path, settings: Settings,
                                                 valid_samples: list[Sample], tmp_path: Path) -> None:
    from selection.judges import make_judge
    from selection.scoring import run_scoring
    from selection.store import ScoreStore

    store = ScoreStore.from_url(f"sqlite:///{tmp_path / 'scores.db'}")
    judge = make_judge(f"distilled:{NAME}", settings)
    assert judge.version == read_meta(fitted).version
    first = await run_scoring(judge, valid_samples[:40], store, split="valid", progress=False)
    assert (first.asked, first.ok, first.skipped) == (40, 40, 0)
    again = await run_scoring(judge, valid_samples[:64], store, split="valid", progress=False)
    assert (again.skipped, again.asked, again.ok) == (40, 24, 24)
    stored = store.get(judge.judge_id, judge.version)
    assert len(stored) == 64
    assert all(0.0 <= s.sensibility <= 10.0 and 0.0 <= s.rationality <= 10.0 for s in stored.values())


@pytest.mark.slow
def test_ensure_default_judge_reuses_an_existing_artifact(fitted: Path, settings: Settings) -> None:
    from selection.distill import ensure_default_judge

    before = (fitted / META_FILE).stat().st_mtime_ns
    assert ensure_default_judge(settings) == f"distilled:{NAME}"
    assert (fitted / META_FILE).stat().st_mtime_ns == before
    from selection.distill.service import encoder_config, same_settings

    other = settings.model_copy(update={"distill_epochs": 3})
    assert not same_settings(read_meta(fitted).config, encoder_config(other).to_json())


@pytest.mark.slow
def test_report_writes_pngs(fitted: Path, data_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from selection.distill.report_cli import main as report_main

    assert report_main(["--name", NAME, "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    assert "held-out discards:" in capsys.readouterr().out
    for name in ("scatter_sensibility.png", "scatter_rationality.png", "buckets_confusion.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_artifact_of_another_format_version_is_a_clear_error(fitted: Path, settings: Settings,
                                                             tmp_path: Path) -> None:
    from selection.distill.judge import DistilledJudge

    other = tmp_path / "old"
    shutil.copytree(fitted, other)
    meta = json.loads((other / META_FILE).read_text())
    (other / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match=r"format version 99.*re-fit"):
        DistilledJudge.load(other)
    with pytest.raises(ModelError, match="no distilled judge"):
        DistilledJudge.from_settings("missing", settings)


def test_a_released_label_file_is_matched_to_the_corpus(paper_scores_path: Path,
                                                       valid_samples: list[Sample]) -> None:
    from selection.distill.sources import labels_from_file

    labels = labels_from_file(paper_scores_path, "efficient-empathy", valid_samples[:300], "valid")
    assert len(labels.pairs) >= 290 and "matched" in labels.source
    ids = {s.id for s in valid_samples[:300]}
    assert all(p.sample_id in ids and 0 <= p.sensibility <= 10 for p in labels.pairs)


def test_label_file_in_an_unknown_format_is_a_clear_error(tmp_path: Path,
                                                          valid_samples: list[Sample]) -> None:
    from selection.distill.sources import labels_from_file

    csv = tmp_path / "labels.csv"
    csv.write_text("context,response,S,R\nhi,hello,5,5\n")
    with pytest.raises(DataError, match="not a JSON file"):
        labels_from_file(csv, "efficient-empathy", valid_samples, "valid")
    with pytest.raises(ConfigError, match="unknown label format 'csv'"):
        labels_from_file(csv, "csv", valid_samples, "valid")


def test_labels_matching_no_sample_are_a_clear_error(tmp_path: Path, corpus_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other_results.json"
    items = [{"context": f"a conversation that is not in the corpus {i}", "response": "nor is this reply",
              "evaluation": "- Rationality: 3\n- Sensibility: 8"} for i in range(3)]
    path.write_text(json.dumps(items))
    argv = ["select", "distill", "fit", "--labels", str(path), "--split", "valid",
            "--corpus", str(corpus_dir), "--data-dir", str(tmp_path), *TINY_FIT]
    assert empathy_main(argv) == 1
    assert "none of the 3 labels" in capsys.readouterr().err


def test_no_teacher_scores_in_the_store_is_a_clear_error(tmp_path: Path, corpus_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["select", "distill", "fit", "--split", "valid", "--corpus", str(corpus_dir),
            "--data-dir", str(tmp_path), *TINY_FIT]
    assert empathy_main(argv) == 1
    assert "import-scores" in capsys.readouterr().err
