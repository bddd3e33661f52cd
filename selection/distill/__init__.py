"""A distilled judge: a small cross-encoder learned from a teacher judge's scores (the paper's released
ChatGPT scores by default) that scores a whole split on a CPU in minutes. Judge spec `distilled:NAME`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from empathy.settings import Settings

__all__ = ["ensure_default_judge"]


def ensure_default_judge(settings: Settings) -> str:
    """Judge spec of the default distilled judge (e.g. `distilled:paper-minilm`), fitted first from
    `settings.distill_labels_path` if missing. Torch is imported only when called."""
    from selection.distill.service import ensure_default_judge as ensure

    return ensure(settings)
