"""Join samples with a judge's scores, bucket them with the rule, and write the subsets (JSONL) + manifest."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selection.judges.base import Score
from selection.rule import BUCKETS, SUBSETS, Bucket, Thresholds, bucket, discard_decision
from selection.sample import Sample


@dataclass(frozen=True)
class Scored:
    sample: Sample
    sensibility: float
    rationality: float
    bucket: Bucket


def join_scores(samples: Sequence[Sample], scores: Mapping[str, Score],
                thresholds: Thresholds) -> list[Scored]:
    """The samples that have an OK score, in corpus order, each with its bucket (duplicates once)."""
    scored: dict[str, Scored] = {}
    for sample in samples:
        score = scores.get(sample.id)
        if score is None or not score.ok or sample.id in scored:
            continue
        assert score.sensibility is not None and score.rationality is not None
        scored[sample.id] = Scored(sample, score.sensibility, score.rationality,
                                   bucket(score.sensibility, score.rationality, thresholds,
                                          discard_decision(score.raw)))
    return list(scored.values())


def row(item: Scored) -> dict[str, Any]:
    """One JSONL row: what TRL's SFT trainer takes, plus the labels."""
    return {"id": item.sample.id, "messages": item.sample.messages(), "emotion": item.sample.emotion,
            "situation": item.sample.situation, "sensibility": item.sensibility,
            "rationality": item.rationality}


def subset_rows(items: Sequence[Scored]) -> dict[str, list[Scored]]:
    subsets: dict[str, list[Scored]] = {name: [] for name in SUBSETS}
    for item in items:
        subsets[item.bucket].append(item)
        subsets["full"].append(item)
    return subsets


def source_hash(samples: Sequence[Sample]) -> str:
    """Hash of the corpus split's content (its sample ids in order)."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.id.encode())
    return digest.hexdigest()[:16]


def _write_jsonl(path: Path, items: Sequence[Scored]) -> str:
    """Write atomically (temp file + rename) and return the file's sha256."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    digest = hashlib.sha256()
    with tmp.open("w", encoding="utf-8") as handle:
        for item in items:
            line = json.dumps(row(item), ensure_ascii=False) + "\n"
            handle.write(line)
            digest.update(line.encode("utf-8"))
    os.replace(tmp, path)
    return digest.hexdigest()


def summary(items: Sequence[Scored], total_samples: int) -> dict[str, Any]:
    n = len(items)
    counts = {name: sum(1 for item in items if item.bucket == name) for name in BUCKETS}
    return {
        "samples": total_samples, "scored": n, "unscored": total_samples - n,
        "counts": {**counts, "full": n},
        "fractions": {name: round(counts[name] / n, 5) if n else 0.0 for name in BUCKETS},
    }


def write_subsets(out: Path, items: Sequence[Scored], meta: dict[str, Any]) -> dict[str, Any]:
    """Write `<subset>.jsonl` for every subset and `manifest.json`; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    files = {f"{name}.jsonl": _write_jsonl(out / f"{name}.jsonl", rows)
             for name, rows in subset_rows(items).items()}
    manifest = {**meta, "files": {name: {"sha256": sha} for name, sha in files.items()}}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return manifest
