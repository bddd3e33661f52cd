"""Subset files -> SFT rows: read and check the JSONL that `empathy select split` writes.

Each row becomes TRL's conversational prompt/completion form (prompt = the context messages, completion =
the reply), so that TRL's `completion_only_loss` puts the loss on the reply only: SmolLM2's chat template
has no `{% generation %}` markers, which `assistant_only_loss` would need.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from empathy.errors import DataError

SUBSETS = ("sensibility", "rationality", "full")


def subset_path(data_dir: Path, subset: str) -> Path:
    from empathy.layout import Layout

    return Layout(data_dir).subset(subset)


def read_subset(path: Path) -> list[dict[str, Any]]:
    """All rows of a subset file; DataError (with the fix) when it is missing, empty or malformed."""
    if not path.is_file():
        raise DataError(f"subset file {path} does not exist; run `empathy select split` first (it writes "
                        f"{path.parent}/<subset>.jsonl) or pass --subset-file PATH.")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_parse_row(line, f"{path}:{number}"))
    if not rows:
        raise DataError(f"subset file {path} is empty: no sample to train on. Check the thresholds of "
                        "`empathy select split` (its manifest.json has the counts) or choose another subset.")
    return rows


def _parse_row(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}); expected one object per line with "
                        '"messages": [{"role", "content"}, ...].') from exc
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or len(messages) < 2:
        raise DataError(f"{where}: expected \"messages\" with at least one context turn and the reply.")
    if any(not isinstance(m, dict) or {"role", "content"} - set(m) for m in messages):
        raise DataError(f"{where}: every message needs \"role\" and \"content\".")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant reply (role \"assistant\"), got "
                        f"{messages[-1]['role']!r}.")
    return row


def take(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """The first `limit` rows of a seeded shuffle (all rows, shuffled, without a limit)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[: limit or len(rows)]]


def to_prompt_completion(row: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def subset_fingerprint(path: Path) -> dict[str, str | None]:
    """Hashes that tie an expert to its data: the subset file and, when present, the split's manifest."""
    manifest = path.parent / "manifest.json"
    return {
        "subset_file": str(path.resolve()),
        "subset_sha256": file_sha256(path),
        "manifest_sha256": file_sha256(manifest) if manifest.is_file() else None,
    }
