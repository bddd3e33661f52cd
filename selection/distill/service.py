"""Glue between settings, the corpus, the store and `fit_distilled` (used by the CLI and the pipeline)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empathy.errors import ModelError
from selection.distill.artifact import META_FILE, ArtifactMeta, artifact_dir, read_meta
from selection.distill.encoder import EncoderConfig
from selection.distill.finetune import FinetuneOptions
from selection.distill.fit import FitOptions, fit_distilled
from selection.distill.fit_lexical import LexicalOptions
from selection.distill.fit_stacked import StackedOptions
from selection.distill.fit_xenc_stacked import XencStackedOptions
from selection.distill.sources import LabelSet, labels_from_file, labels_from_store

if TYPE_CHECKING:
    from empathy.settings import Settings

log = logging.getLogger("empathy.selection.distill")
PAPER_JUDGE_ID = "efficient-empathy-chatgpt"


def encoder_config(settings: Settings, limit: int | None = None) -> EncoderConfig:
    return EncoderConfig(max_len=settings.distill_max_len,
                         max_response_tokens=min(48, settings.distill_max_len // 2),
                         epochs=settings.distill_epochs, loss=settings.distill_loss,
                         seed=settings.distill_seed, limit_train=limit)


def fit_options(settings: Settings, baseline: bool) -> FitOptions:
    return FitOptions(holdout=settings.distill_holdout, seed=settings.distill_seed, baseline=baseline,
                      s_threshold=settings.sensibility_threshold, r_threshold=settings.rationality_threshold)


def load_labels(settings: Settings, split: str, labels: Path | None, fmt: str,
                judge_id: str = PAPER_JUDGE_ID) -> LabelSet:
    """Labels from a file (matched to the split) or, without a file, the store's scores of `judge_id`."""
    from selection.commands.common import load_split, open_store

    samples = load_split(settings, split).samples
    if labels is not None:
        return labels_from_file(labels, fmt, samples, split)
    return labels_from_store(open_store(settings), judge_id, samples, split)


def set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def fit_named(settings: Settings, labels: LabelSet, name: str, baseline: bool = True,
              limit: int | None = None) -> ArtifactMeta:
    set_threads(settings.distill_threads)
    folder = artifact_dir(settings.data_dir, name)
    return fit_distilled(labels, encoder_config(settings, limit), fit_options(settings, baseline), folder)


SETTING_KEYS = ("max_len", "max_response_tokens", "epochs", "loss", "seed")


def same_settings(fitted: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Was the artifact fitted with the EMPATHY_DISTILL_* settings in force (a `--limit` is kept)?"""
    return all(fitted.get(k) == wanted.get(k) for k in SETTING_KEYS)


def lexical_options(settings: Settings) -> LexicalOptions:
    return LexicalOptions(holdout=settings.distill_holdout, seed=settings.distill_seed,
                          calibration=settings.distill_discard_calibration,
                          r_threshold=settings.rationality_threshold)


def fit_lexical_named(settings: Settings, labels: LabelSet, name: str) -> ArtifactMeta:
    """The lexical judge from `labels` (valid scores) and the train split's keep/discard labels."""
    from selection.commands.common import load_split
    from selection.distill.discard_labels import load_discard_labels
    from selection.distill.fit_lexical import fit_lexical

    train = load_split(settings, "train").samples
    path = Path(settings.distill_discard_path)
    discard = load_discard_labels(path, train)
    return fit_lexical(labels, train, discard, str(path.resolve()), lexical_options(settings),
                       artifact_dir(settings.data_dir, name))


def stacked_options(settings: Settings, kind: str = "stacked") -> StackedOptions:
    return StackedOptions(base=settings.distill_base_name, holdout=settings.distill_holdout,
                          seed=settings.distill_seed, kind=kind)


def ensure_base(settings: Settings, labels: LabelSet) -> Path:
    """The stacked judge's lexical base, fitted first if missing or fitted with other settings."""
    folder = artifact_dir(settings.data_dir, settings.distill_base_name)
    if not _is_current(folder, settings, "lexical"):
        log.info("fitting the lexical base %s of the stacked judge", folder.name)
        fit_lexical_named(settings, labels, folder.name)
    return folder


def fit_stacked_named(settings: Settings, labels: LabelSet, name: str, kind: str = "stacked"
                      ) -> ArtifactMeta:
    """The stacked judge over its lexical base (reused when current, else fitted first); kind `embed`
    adds the reply-embedding first stage (`selection/distill/embed.py`)."""
    from selection.commands.common import load_split
    from selection.distill.discard_labels import load_discard_labels
    from selection.distill.embed import EmbedBlock
    from selection.distill.fit_stacked import fit_stacked

    base = ensure_base(settings, labels)
    train = load_split(settings, "train").samples
    discard = load_discard_labels(Path(settings.distill_discard_path), train)
    opts = stacked_options(settings, kind)
    extra = EmbedBlock(folds=opts.folds) if kind == "embed" else None
    return fit_stacked(labels, train, discard, base, opts, artifact_dir(settings.data_dir, name), extra)


def finetune_options(settings: Settings) -> FinetuneOptions:
    return FinetuneOptions(holdout=settings.distill_holdout, seed=settings.distill_seed,
                           max_len=settings.distill_max_len)


def fit_finetune_named(settings: Settings, labels: LabelSet, name: str) -> ArtifactMeta:
    """The fine-tuned cross-encoder judge (`selection/distill/finetune.py`) from `labels` (valid scores) and
    the train split's keep/discard labels; resumes an interrupted fit from its checkpoint."""
    from selection.commands.common import load_split
    from selection.distill.baseline import minilm_path
    from selection.distill.discard_labels import load_discard_labels
    from selection.distill.fit_finetune import fit_finetune

    set_threads(settings.distill_threads)
    train = load_split(settings, "train").samples
    discard = load_discard_labels(Path(settings.distill_discard_path), train)
    return fit_finetune(labels, train, discard, finetune_options(settings),
                        artifact_dir(settings.data_dir, name), minilm_path())


def xenc_stacked_options(settings: Settings) -> XencStackedOptions:
    return XencStackedOptions(base=settings.distill_base_name, holdout=settings.distill_holdout,
                              seed=settings.distill_seed)


def fit_xenc_stacked_named(settings: Settings, labels: LabelSet, name: str) -> ArtifactMeta:
    """The xenc-stacked judge (`selection/distill/xenc_stack.py`) over its lexical base and the fine-tuned
    cross-encoder `XencStackedOptions.xenc` (each fitted first when missing or fitted with other settings);
    its out-of-fold fine-tunes resume from their checkpoints."""
    from selection.commands.common import load_split
    from selection.distill.baseline import minilm_path
    from selection.distill.discard_labels import load_discard_labels
    from selection.distill.fit_xenc_stacked import fit_xenc_stacked

    base = ensure_base(settings, labels)
    opts = xenc_stacked_options(settings)
    if not _is_current(artifact_dir(settings.data_dir, opts.xenc), settings, "finetune"):
        fit_finetune_named(settings, labels, opts.xenc)
    set_threads(settings.distill_threads)
    train = load_split(settings, "train").samples
    discard = load_discard_labels(Path(settings.distill_discard_path), train)
    return fit_xenc_stacked(labels, train, discard, base, opts, artifact_dir(settings.data_dir, name),
                            minilm_path())


def _wanted_config(settings: Settings, kind: str) -> dict[str, Any]:
    if kind == "lexical":
        return lexical_options(settings).config()
    if kind in ("stacked", "embed"):
        return stacked_options(settings, kind).config()
    if kind == "finetune":
        return finetune_options(settings).config()
    if kind == "xenc-stacked":
        return xenc_stacked_options(settings).config()
    return encoder_config(settings).to_json()


def _is_current(folder: Path, settings: Settings, kind: str) -> bool:
    if not (folder / META_FILE).is_file():
        return False
    try:
        fitted = read_meta(folder).config
    except ModelError as exc:
        log.warning("re-fitting the default distilled judge: %s", exc)
        return False
    if kind in ("lexical", "stacked", "embed", "finetune", "xenc-stacked"):
        current = fitted == _wanted_config(settings, kind)
    else:
        current = fitted.get("kind") is None and same_settings(fitted, _wanted_config(settings, kind))
    if not current:
        log.warning("re-fitting the distilled judge %s: its settings differ from the current "
                    "EMPATHY_DISTILL_* settings", folder.name)
    return current


def ensure_default_judge(settings: Settings) -> str:
    """The judge spec of the default distilled judge (`distilled:<distill_name>`), fitted first from
    `distill_labels_path` (and, for the lexical kind, `distill_discard_path`) if its artifact is missing,
    of an older format, or fitted with other settings."""
    name = settings.distill_name
    if _is_current(artifact_dir(settings.data_dir, name), settings, settings.distill_kind):
        return f"distilled:{name}"
    log.info("fitting the default distilled judge %s (%s) from %s", name, settings.distill_kind,
             settings.distill_labels_path)
    labels = load_labels(settings, settings.distill_labels_split, Path(settings.distill_labels_path),
                         settings.distill_labels_format)
    if settings.distill_kind in ("stacked", "embed"):
        fit_stacked_named(settings, labels, name, settings.distill_kind)
    elif settings.distill_kind == "lexical":
        fit_lexical_named(settings, labels, name)
    elif settings.distill_kind == "finetune":
        fit_finetune_named(settings, labels, name)
    elif settings.distill_kind == "xenc-stacked":
        fit_xenc_stacked_named(settings, labels, name)
    else:
        fit_named(settings, labels, name, baseline=False)
    return f"distilled:{name}"
