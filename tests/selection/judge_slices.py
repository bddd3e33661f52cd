"""Stacked-family judges fitted on small slices of the real data (shared by the stacked and embed tests):
a lexical base fitted on the slices, then the stacked judge (with an extra first stage, if given) over it."""

from __future__ import annotations

from pathlib import Path

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
