"""A user's own corpus: `<split>.jsonl`, one chat per line `{"messages": [{"role", "content"}, ...]}`
(optional `emotion`, `situation`, `id`). One sample per assistant turn, the turns before it as context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from empathy.errors import DataError
from selection.corpus.base import LoadResult, Problem, require_file
from selection.sample import Message, Sample, make_sample

LAYOUT = ('a folder with <split>.jsonl files (train.jsonl, valid.jsonl, test.jsonl), one chat per line: '
          '{"messages": [{"role": "user"|"assistant"|"system", "content": "..."}, ...]}')
ROLES = {"user", "assistant", "system"}


def parse_messages(record: Any) -> list[Message] | str:
    """The chat's messages, or why the record cannot be used."""
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        return 'expected an object with a "messages" list'
    messages: list[Message] = []
    for position, item in enumerate(record["messages"]):
        valid = isinstance(item, dict) and item.get("role") in ROLES and isinstance(item.get("content"), str)
        if not valid:
            return f"messages[{position}] needs a role in {sorted(ROLES)} and a string content"
        messages.append(Message(item["role"], item["content"]))
    return messages


def chat_samples(record: dict[str, Any], messages: list[Message], split: str, source: str,
                 line: int) -> list[Sample]:
    conv_id = str(record.get("id", f"line:{line}"))
    return [
        make_sample(split=split, conv_id=conv_id, turn=turn, context=messages[:turn],
                    response=message.content, emotion=str(record.get("emotion", "")),
                    situation=str(record.get("situation", "")),
                    source=source)
        for turn, message in enumerate(messages)
        if message.role == "assistant" and turn > 0 and message.content.strip()
    ]


class JsonlChatLoader:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, split: str) -> LoadResult:
        path = require_file(self.path / f"{split}.jsonl", self.path, LAYOUT)
        samples: list[Sample] = []
        problems: list[Problem] = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    problems.append(Problem(str(path), number, f"not JSON: {exc.msg}"))
                    continue
                messages = parse_messages(record)
                if isinstance(messages, str):
                    problems.append(Problem(str(path), number, messages))
                    continue
                samples.extend(chat_samples(record, messages, split, f"{path}:{number}", number))
        if not samples:
            raise DataError(f"{path} has no assistant turns to score ({len(problems)} bad lines); "
                            f"expected {LAYOUT}")
        return LoadResult(samples, problems)
