"""Import judge scores released with papers, matched to our samples on normalised text.

`efficient-empathy`: the `*_results.json` of Sun et al. (2024): a list of `{"context", "response",
"evaluation"}` in the paper's preprocessing (lower-cased, space-tokenised, contractions split or expanded,
turns joined with ` </s> `), `evaluation` the judge's text with two `Rationality: n` / `Sensibility: n` lines.
Both sides are normalised the same way (lower-case, contractions' ambiguous parts dropped, non-alphanumerics
removed); an item matches on (context, response), else on (last context turn, response).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empathy.errors import DataError
from selection.judges.base import Score
from selection.sample import Sample

PAPER_JUDGE_ID = "efficient-empathy-chatgpt"
PAPER_VERSION = "released-2024"
TURN_SEP = "</s>"
# Words that contraction handling makes unreliable ("i'm" vs "i am", "can't" vs "ca n't" vs "can not").
AMBIGUOUS = frozenset(
    ["s", "m", "am", "is", "re", "are", "ve", "have", "ll", "will", "d", "would", "had", "not", "n", "t",
     "nt", "ca", "can", "cannot", "wo", "won"]
)
SCORE_LINE = re.compile(r"(rationality|sensibility)\W*?(\d{1,2})\b", re.IGNORECASE)


def normalise(text: str) -> str:
    """Lower-case alphanumeric words without the contraction-ambiguous ones, joined without spaces
    (the paper splits words like "wanna" into "wan na")."""
    text = text.lower().replace("_comma_", ",").replace("n't", " not ").replace("'", " ").replace("’", " ")
    words = re.sub(r"[^0-9a-z]+", " ", text).split()
    return "".join(word for word in words if word not in AMBIGUOUS)


def parse_evaluation(text: str) -> tuple[float, float] | None:
    """(sensibility, rationality) from an evaluation text in any of its variants, or None."""
    found = {name.lower(): int(value) for name, value in SCORE_LINE.findall(text or "")}
    if set(found) != {"sensibility", "rationality"}:
        return None
    if not all(0 <= value <= 10 for value in found.values()):
        return None
    return float(found["sensibility"]), float(found["rationality"])


@dataclass
class ImportReport:
    items: int = 0
    matched: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    unparsable: int = 0
    duplicates: int = 0  # items matched to a sample another item already took
    examples: list[str] = field(default_factory=list)  # a few unmatched/unparsable items, for the user

    @property
    def match_rate(self) -> float:
        return self.matched / self.items if self.items else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "matched": self.matched, "unmatched": self.unmatched,
                "ambiguous": self.ambiguous, "unparsable": self.unparsable, "duplicates": self.duplicates,
                "match_rate": round(self.match_rate, 5), "examples": self.examples}


class SampleIndex:
    """Our samples by normalised (context, response) and by (last turn, response)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.full: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        self.last: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for sample in samples:
            turns = [m.content for m in sample.context]
            response = normalise(sample.response)
            self.full[(normalise(" ".join(turns)), response)].append(sample)
            self.last[(normalise(turns[-1]) if turns else "", response)].append(sample)

    def find(self, context: str, response: str) -> list[Sample]:
        """Candidates for one paper item: exact on the whole context first, then on the last turn."""
        turns = [turn for turn in context.split(TURN_SEP)]
        response_key = normalise(response)
        found = self.full.get((normalise(" ".join(turns)), response_key))
        if found:
            return found
        return self.last.get((normalise(turns[-1]), response_key), [])


def read_paper_items(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"scores file {path} does not exist.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a JSON file ({exc}); --format efficient-empathy expects the paper's "
                        '*_results.json: a list of {"context", "response", "evaluation"}.') from exc
    keys = {"context", "response", "evaluation"}
    if not isinstance(data, list) or not all(isinstance(x, dict) and keys <= set(x) for x in data):
        raise DataError(f"{path} is not in the efficient-empathy format: expected a JSON list of objects "
                        f"with {sorted(keys)}.")
    if not data:
        raise DataError(f"{path} holds no items.")
    return data


def _note(report: ImportReport, message: str) -> None:
    if len(report.examples) < 10:
        report.examples.append(message)


def _match_one(item: dict[str, Any], position: int, index: SampleIndex, report: ImportReport,
               taken: dict[str, Score]) -> None:
    scores = parse_evaluation(str(item["evaluation"]))
    if scores is None:
        report.unparsable += 1
        _note(report, f"item {position}: unparsable evaluation {item['evaluation']!r}")
        return
    candidates = index.find(str(item["context"]), str(item["response"]))
    ids = {sample.id for sample in candidates}
    if len(ids) > 1:
        report.ambiguous += 1
        return
    if not ids:
        report.unmatched += 1
        _note(report, f"item {position}: no sample for response {item['response'][:60]!r}")
        return
    sample_id = ids.pop()
    if sample_id in taken:
        report.duplicates += 1
        return
    report.matched += 1
    taken[sample_id] = Score(sample_id, scores[0], scores[1], raw=str(item["evaluation"]))


def import_efficient_empathy(path: Path, samples: Sequence[Sample]) -> tuple[list[Score], ImportReport]:
    """Scores for our samples from the paper's file, and what matched."""
    items = read_paper_items(path)
    index = SampleIndex(samples)
    report = ImportReport(items=len(items))
    taken: dict[str, Score] = {}
    for position, item in enumerate(items):
        _match_one(item, position, index, report, taken)
    return list(taken.values()), report


IMPORTERS: dict[str, Callable[[Path, Sequence[Sample]], tuple[list[Score], ImportReport]]] = {
    "efficient-empathy": import_efficient_empathy,
}
JUDGE_IDS = {"efficient-empathy": (PAPER_JUDGE_ID, PAPER_VERSION)}
