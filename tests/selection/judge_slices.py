"""Stacked-family judges fitted on small slices of the real data (shared by the stacked, embed and
xenc-stacked tests): a lexical base fitted on the slices, then the stacked judge (with an extra first stage,
if given) over it; a tiny random BERT for the fine-tuned judges' tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from empathy.settings import Settings, get_settings
from selection.corpus import load_corpus
from selection.distill.artifact import artifact_dir
from selection.distill.discard_labels import load_discard_labels
from selection.distill.fit_lexical import LexicalOptions, fit_lexical
from selection.distill.fit_stacked import FirstStage, StackedOptions, fit_stacked
from selection.distill.service import load_labels
from selection.distill.sources import LabelSet
from selection.sample import Sample


def slice_settings(data_dir: Path, corpus_dir: Path, paper_scores_path: Path, name: str, base: str,
                   kind: str) -> Settings:
    return get_settings(data_dir=data_dir, corpus_path=corpus_dir, distill_name=name,
                        distill_base_name=base, distill_kind=kind,
                        distill_discard_path=paper_scores_path.parent / "train_discard.json")


def fit_on_slices(settings: Settings, train: list[Sample], paper_scores_path: Path, valid_slice: int,
                  opts: StackedOptions, extra: FirstStage | None = None) -> Path:
    """The judge `settings.distill_name` over the base `opts.base`, from the first `valid_slice` valid
    labels and the train samples `train` (the first ones of the split)."""
    valid = load_labels(settings, "valid", paper_scores_path, "efficient-empathy")
    small = LabelSet(valid.pairs[:valid_slice], valid.source)
    labels = load_discard_labels(settings.distill_discard_path, load_corpus(settings, "train").samples)
    base = artifact_dir(settings.data_dir, opts.base)
    fit_lexical(small, train, labels[:len(train)], "slice", LexicalOptions(), base)
    folder = artifact_dir(settings.data_dir, settings.distill_name)
    fit_stacked(small, train, labels[:len(train)], base, opts, folder, extra)
    return folder


def save_tiny_bert(folder: Path) -> Path:
    """A 2-layer random BERT (hidden 32) saved with all-MiniLM-L6-v2's tokenizer (for fast fine-tune fits)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from selection.distill.baseline import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def judge_matches_model(settings: Settings, folder: Path, model: Any, samples: list[Sample]) -> np.ndarray:
    """Score `samples` with the judge `distilled:<folder name>` from the registry and check it against the
    loaded `model` (rule, version, scores, discard decisions); the model's (n, 4) outputs."""
    import asyncio

    from selection.distill.artifact import read_meta
    from selection.distill.lexical import lexical_input
    from selection.judges import make_judge

    assert model.rule.__dict__ == read_meta(folder).extra["rule"]
    judge = make_judge(f"distilled:{folder.name}", settings)
    assert judge.judge_id == f"distilled:{folder.name}" and judge.version == read_meta(folder).version
    scores = asyncio.run(judge.score(samples))
    out = np.asarray(model.predict([lexical_input(s) for s in samples]))
    assert [s.sample_id for s in scores] == [s.id for s in samples]
    assert np.allclose([[s.sensibility, s.rationality] for s in scores], out[:, :2], atol=1e-3)
    assert all(('"discard": true' in s.raw) == bool(d) for s, d in zip(scores, out[:, 3], strict=True))
    assert model.predict([]).shape == (0, 4)
    return out
