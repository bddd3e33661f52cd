"""The scores store on a real SQLite file: upsert rules and what a resumed run would ask again."""

from __future__ import annotations

from pathlib import Path

from selection.judges.base import Score
from selection.store import ScoreStore


def _store(tmp_path: Path) -> ScoreStore:
    return ScoreStore.from_url(f"sqlite:///{tmp_path / 'scores.db'}")


def test_missing_skips_ok_scores_only(tmp_path: Path) -> None:
    store = _store(tmp_path)
    failed = Score("b", None, None, "garbage", "unparsable")
    store.put_many([Score("a", 7, 3, "{}"), failed], "j", "v1", "valid")
    assert store.missing(["a", "b", "c", "a"], "j", "v1") == ["b", "c"]
    assert store.missing(["a"], "j", "v2") == ["a"]  # another prompt version is another cache
    assert store.missing(["a"], "k", "v1") == ["a"]


def test_ok_replaces_failure_but_failure_never_replaces_ok(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.put_many([Score("a", 7, 3, "first"), Score("b", None, None, "bad", "unparsable")], "j", "v1")
    later = [Score("a", None, None, "later garbage", "unparsable"), Score("b", 2, 9, "fixed")]
    store.put_many(later, "j", "v1")
    scores = store.get("j", "v1")
    assert (scores["a"].sensibility, scores["a"].rationality, scores["a"].raw) == (7, 3, "first")
    assert (scores["b"].sensibility, scores["b"].rationality, scores["b"].raw) == (2, 9, "fixed")
    store.put_many([Score("a", 8, 4, "rescored")], "j", "v1")
    assert store.get("j", "v1")["a"].sensibility == 8


def test_failures_are_kept_with_raw_text_and_no_number(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.put_many([Score("x", None, None, "I like it!", "unparsable reply")], "j", "v1")
    assert store.get("j", "v1") == {}
    failed = store.get("j", "v1", ok_only=False)["x"]
    assert failed.raw == "I like it!" and failed.sensibility is None and failed.error == "unparsable reply"
    info = store.judges()[0]
    assert (info.judge_id, info.version, info.ok, info.failed) == ("j", "v1", 0, 1)


def test_store_survives_reopening_and_large_batches(tmp_path: Path) -> None:
    ids = [f"s{i}" for i in range(1200)]
    _store(tmp_path).put_many([Score(i, 5, 5) for i in ids[:700]], "j", "v1")
    reopened = _store(tmp_path)
    assert reopened.missing(ids, "j", "v1") == ids[700:]
    assert reopened.latest_version("j") == "v1"
