"""Shared by `split` and `report`: a judge's stored scores joined with a split and bucketed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from empathy.errors import DataError
from empathy.settings import Settings
from selection.judges import make_judge
from selection.rule import Thresholds
from selection.sample import Sample
from selection.store import ScoreStore
from selection.subsets import Scored, join_scores, source_hash, summary


@dataclass
class Selected:
    items: list[Scored]
    meta: dict[str, Any]


def judge_key(spec: str, settings: Settings) -> tuple[str, str | None]:
    """(judge_id, fixed version or None) of a --judge spec, without contacting any endpoint."""
    if spec.startswith("openai"):
        from selection.judges.prompt import PROMPT_VERSION

        model = spec.partition(":")[2] or settings.judge_model
        return f"openai:{model}", PROMPT_VERSION
    if spec.startswith("distilled:"):
        judge = make_judge(spec, settings)
        return judge.judge_id, judge.version
    return spec.removeprefix("imported:"), None


def selected_scores(store: ScoreStore, spec: str, version: str | None, samples: Sequence[Sample],
                    settings: Settings, split: str) -> Selected:
    judge_id, fixed = judge_key(spec, settings)
    version = version or fixed or store.latest_version(judge_id)
    scores = store.get(judge_id, version) if version else {}
    thresholds = Thresholds(settings.sensibility_threshold, settings.rationality_threshold)
    items = join_scores(samples, scores, thresholds)
    if not items:
        known = ", ".join(f"{j.judge_id} ({j.version}: {j.ok} ok)" for j in store.judges()) or "none"
        raise DataError(f"no stored scores of judge {judge_id!r} match the {split} split of "
                        f"{settings.corpus_path}. Judges in the store {settings.resolved_store_url()}: "
                        f"{known}. "
                        "Score first (`empathy select score`) or import (`empathy select import-scores`).")
    meta = {"judge": judge_id, "version": version, "split": split, "corpus": str(settings.corpus_path),
            "source_hash": source_hash(samples),
            "thresholds": {"sensibility": thresholds.sensibility, "rationality": thresholds.rationality},
            "rule": "sensibility: S > ts and R < tr; rationality: R > tr; else discard; full: all scored "
                    "(a judge's own discard decision, when it has one: discard it, else R > tr: "
                    "rationality, else sensibility)",
            **summary(items, len(samples))}
    return Selected(items, meta)


def rule_settings(args: Any) -> Settings:
    """The settings the flags of `split` and `report` ask for (the rule's thresholds too), logging set up."""
    from empathy.logs import setup_logging
    from selection.commands.common import settings_from

    settings = settings_from(args, sensibility_threshold=args.sensibility_threshold,
                             rationality_threshold=args.rationality_threshold)
    setup_logging(settings.log_level)
    return settings


def select_split(settings: Settings, judge: str, version: str | None, split: str) -> Selected:
    """The selection rule applied to `judge`'s stored scores (`version`, default the latest) of `split`."""
    from selection.commands.common import load_split, open_store

    samples = load_split(settings, split).samples
    return selected_scores(open_store(settings), judge, version, samples, settings, split)


def selected_from_args(args: Any) -> tuple[Settings, Selected]:
    """Settings and selected scores from the parsed flags that `split` and `report` share."""
    settings = rule_settings(args)
    return settings, select_split(settings, args.judge, args.version, args.split)
