"""The text a distilled judge sees: the same for teacher labels and for corpus samples it scores."""

from __future__ import annotations

import re

from selection.sample import Sample

TURN_SEPARATOR = " | "
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower-case and collapse whitespace; the paper's release is lower-cased, the corpus is not."""
    return _SPACES.sub(" ", text.replace("_comma_", ",")).strip().lower()


def context_text(turns: tuple[str, ...] | list[str]) -> str:
    return TURN_SEPARATOR.join(normalize(t) for t in turns)


def sample_texts(sample: Sample) -> tuple[str, str]:
    """(context, response) of a corpus sample, in the judge's input form."""
    return context_text([m.content for m in sample.context]), normalize(sample.response)
