"""EmpatheticDialogues (Rashkin et al., 2019) in its official CSV layout.

The official files are not RFC-4180 CSV: commas inside text are written `_comma_` and quotes are literal
characters, so a row is split on plain commas (a CSV reader would treat a stray quote as an opening quote
and silently merge rows). A row without exactly the 8 official fields, or with a bad `utterance_idx`, is
reported with its file and line and skipped; turns after a gap in a conversation are skipped too, so that
no sample is built on a context with a hole in it. `speaker_idx`, `selfeval` and `tags` are never read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from empathy.errors import DataError
from selection.corpus.base import SPLITS, LoadResult, Problem, require_file
from selection.sample import Message, Sample, make_sample

HEADER = ("conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags")
LAYOUT = (
    "a folder with train.csv, valid.csv and test.csv in the official EmpatheticDialogues layout "
    f"(header `{','.join(HEADER)}`), as unpacked from the official `empatheticdialogues.tar.gz`."
)


@dataclass(frozen=True)
class Row:
    conv_id: str
    idx: int
    emotion: str
    situation: str
    text: str
    line: int


def unescape(text: str) -> str:
    return text.replace("_comma_", ",").strip()


def parse_row(fields: list[str], line: int) -> Row | str:
    """A Row, or the reason the line cannot be used."""
    if len(fields) != len(HEADER):
        return f"expected {len(HEADER)} comma-separated fields, found {len(fields)} (unescaped comma?)"
    conv_id, idx_text, emotion, prompt, _speaker, utterance = fields[:6]
    if not conv_id.strip():
        return "empty conv_id"
    try:
        idx = int(idx_text)
    except ValueError:
        return f"utterance_idx {idx_text!r} is not an integer"
    if idx < 1:
        return f"utterance_idx {idx} < 1"
    if not unescape(utterance):
        return "empty utterance"
    return Row(conv_id.strip(), idx, emotion.strip(), unescape(prompt), unescape(utterance), line)


def read_rows(path: Path, problems: list[Problem]) -> list[Row]:
    rows: list[Row] = []
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        header = handle.readline().rstrip("\r\n").split(",")
        if tuple(header[:6]) != HEADER[:6]:
            raise DataError(f"{path}:1: header {','.join(header)!r} is not the EmpatheticDialogues header; "
                            f"expected {LAYOUT}")
        for number, raw in enumerate(handle, start=2):
            text = raw.rstrip("\r\n")
            if not text.strip():
                continue
            parsed = parse_row(text.split(","), number)
            if isinstance(parsed, str):
                problems.append(Problem(str(path), number, parsed))
            else:
                rows.append(parsed)
    return rows


def group_conversations(rows: list[Row], path: Path, problems: list[Problem]) -> dict[str, list[Row]]:
    """conv_id -> rows ordered by utterance_idx, duplicates reported and dropped (first kept)."""
    convs: dict[str, dict[int, Row]] = defaultdict(dict)
    for row in rows:
        seen = convs[row.conv_id]
        if row.idx in seen:
            problems.append(Problem(str(path), row.line, f"duplicate utterance_idx {row.idx} of "
                                    f"{row.conv_id} (first at line {seen[row.idx].line})"))
            continue
        seen[row.idx] = row
    return {conv: [turns[i] for i in sorted(turns)] for conv, turns in convs.items()}


def conversation_samples(turns: list[Row], split: str, path: Path, problems: list[Problem]) -> list[Sample]:
    """One sample per listener turn (even utterance_idx) whose earlier turns are all present."""
    samples: list[Sample] = []
    context: list[Message] = []
    for expected, row in enumerate(turns, start=1):
        if row.idx != expected:
            problems.append(Problem(str(path), row.line, f"{row.conv_id}: utterance_idx {expected} is "
                                    f"missing; turns from {row.idx} on are skipped"))
            break
        listener = row.idx % 2 == 0
        if listener:
            samples.append(make_sample(
                split=split, conv_id=row.conv_id, turn=row.idx, context=context, response=row.text,
                emotion=row.emotion, situation=row.situation, source=f"{path}:{row.line}",
            ))
        context = [*context, Message("assistant" if listener else "user", row.text)]
    return samples


class EmpatheticDialoguesLoader:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, split: str) -> LoadResult:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; EmpatheticDialogues has {', '.join(SPLITS)}.")
        path = require_file(self.path / f"{split}.csv", self.path, LAYOUT)
        problems: list[Problem] = []
        rows = read_rows(path, problems)
        if not rows:
            raise DataError(f"{path} has no usable rows ({len(problems)} malformed); expected {LAYOUT}")
        samples: list[Sample] = []
        for turns in group_conversations(rows, path, problems).values():
            samples.extend(conversation_samples(turns, split, path, problems))
        return LoadResult(samples, problems)
