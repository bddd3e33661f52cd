"""Judge registry: build a judge from a spec string.

- `openai[:MODEL]`: the LLM judge on the configured OpenAI-compatible endpoint (`EMPATHY_JUDGE_URL`/`_MODEL`).
- `imported:<name>` (or a bare stored name such as `efficient-empathy-chatgpt`): scores already in the store
  (e.g. the paper's release); it cannot score new samples.
- `distilled:<NAME>`: a judge learned from imported scores (`selection.distill.judge.DistilledJudge`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from empathy.errors import ConfigError, JudgeError
from selection.judges.base import Judge, Score
from selection.sample import Sample

if TYPE_CHECKING:
    from empathy.settings import Settings

__all__ = ["JUDGE_KINDS", "ImportedJudge", "Judge", "Score", "make_judge"]


class ImportedJudge(Judge):
    """Stands for scores imported into the store; asking it for new scores is an error."""

    def __init__(self, name: str, version: str = "") -> None:
        self.judge_id = name
        self.version = version
        self.batch_size = 1 << 30  # one call with everything missing, so the error counts it all

    async def score(self, samples: Sequence[Sample]) -> list[Score]:
        raise JudgeError(
            f"judge {self.judge_id!r} only has imported scores; it cannot score {len(samples)} new samples. "
            "Use `--judge openai` (an LLM endpoint) or `--judge distilled:NAME` to score them."
        )


def _openai(arg: str, settings: Settings) -> Judge:
    from selection.judges.openai_judge import OpenAIJudge

    # `openai:MODEL` names the model; bare `openai` takes EMPATHY_JUDGE_MODEL.
    return OpenAIJudge.from_settings(settings.model_copy(update={"judge_model": arg}) if arg else settings)


def _imported(arg: str, _settings: Settings) -> Judge:
    if not arg:
        raise ConfigError("judge spec `imported:` needs a name, e.g. imported:efficient-empathy-chatgpt")
    return ImportedJudge(arg)


def _distilled(arg: str, settings: Settings) -> Judge:
    # Imported lazily: the distilled judge pulls in model code the other kinds do not need.
    # Contract with `selection/distill/`: `DistilledJudge.from_settings(name, settings) -> Judge`.
    if not arg:
        raise ConfigError("judge spec `distilled:` needs an artifact name, e.g. distilled:default")
    try:
        module = importlib.import_module("selection.distill.judge")
    except ModuleNotFoundError as exc:
        if exc.name != "selection.distill.judge":
            raise
        raise ConfigError(f"--judge distilled:{arg}: this installation has no distilled judges "
                          "(selection.distill.judge is missing).") from exc
    return module.DistilledJudge.from_settings(arg, settings)


JUDGE_KINDS: dict[str, Callable[[str, Settings], Judge]] = {
    "openai": _openai,
    "imported": _imported,
    "distilled": _distilled,
}


def make_judge(spec: str, settings: Settings) -> Judge:
    """A judge from `kind[:arg]`; an unknown kind is taken as the name of imported scores."""
    kind, _, arg = spec.partition(":")
    if kind in JUDGE_KINDS:
        return JUDGE_KINDS[kind](arg, settings)
    if ":" in spec:
        raise ConfigError(f"unknown judge kind {kind!r} in --judge {spec!r}; use one of "
                          f"{', '.join(f'{k}:...' if k != 'openai' else k for k in JUDGE_KINDS)}.")
    return ImportedJudge(spec)
