"""The gateway's store on both backends (a SQLite file and a real PostgreSQL server): every method
round-trips, experiment data counts only the experiment's own traffic, concurrent writers lose nothing."""

from __future__ import annotations

import time

from serve.experiments import Arm, Experiment
from serve.store import Completion, Store
from tests.serve.conftest import run_together


def _completion(cid: str, experiment: str | None = None, arm: str | None = None,
                subject: str | None = None, latency: float = 10.0) -> Completion:
    return Completion(id=cid, model="base", adapter="base", blend=None, source="fixed", experiment=experiment,
                      arm=arm, subject=subject, latency_ms=latency, ttft_ms=None, stream=False)


def test_completions_ratings_votes_and_counts(store: Store) -> None:
    for cid in ("c1", "c2", "c3"):
        store.add_completion(_completion(cid))
    store.add_completion(_completion("c1", latency=99.0))  # the same id again: one row (merge)
    assert store.missing_completions(["c1", "c2", "nope", "c3"]) == ["nope"]
    r1, r2 = store.add_rating("c1", 1, "thumbs"), store.add_rating("c2", 4, "likert")
    v1 = store.add_pairwise("c1", "c2", "a")
    assert r2 > r1 and v1 >= 1
    assert store.counts() == {"serve_completions": 3, "serve_assignments": 0, "serve_ratings": 2,
                              "serve_pairwise": 1}


def test_experiments_round_trip_and_delete(store: Store) -> None:
    exp = Experiment(name="warmth", arms=[Arm(name="a", model="base"), Arm(name="b", model="blend:0.5",
                                                                            weight=3)], created=time.time())
    store.save_experiment(exp)
    store.save_experiment(exp.model_copy(update={"description": "again"}))  # replaced, not duplicated
    assert [e.model_dump() for e in store.experiments()] == [exp.model_copy(update={"description": "again"})
                                                             .model_dump()]
    assert store.delete_experiment("warmth") and not store.delete_experiment("warmth")
    assert store.experiments() == []


def test_experiment_data_counts_only_its_own_traffic(store: Store) -> None:
    exp = Experiment(name="exp", arms=[Arm(name="a", model="base"), Arm(name="b", model="base")],
                     created=time.time() - 1)
    for i, arm in enumerate("abab"):
        store.add_assignment("exp", f"user-{i}", arm)
        store.add_completion(_completion(f"e{i}", "exp", arm, f"user-{i}", latency=float(i)))
    store.add_assignment("exp", "user-0", "a")  # a returning user is one assigned user
    store.add_completion(_completion("other", "other-exp", "a"))
    store.add_completion(_completion("plain"))
    store.add_rating("e0", 1, "thumbs")
    store.add_rating("other", 0, "thumbs")
    store.add_pairwise("e0", "e1", "b")
    data = store.experiment_data(exp)
    assert data["arm_of"] == {"e0": "a", "e1": "b", "e2": "a", "e3": "b"}
    assert data["ratings"] == [("e0", 1.0, "thumbs")]
    assert data["votes"] == [("e0", "e1", "b")]
    assert data["assigned"] == {"a": 2, "b": 2}
    assert sorted(data["latency"]) == [("a", 0.0, None), ("a", 2.0, None), ("b", 1.0, None), ("b", 3.0, None)]


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    def write(worker: int) -> None:
        for j in range(15):
            cid = f"w{worker}-{j}"
            store.add_completion(_completion(cid, "exp", "a", f"u{worker}"))
            store.add_assignment("exp", f"u{worker}", "a")
            store.add_rating(cid, j % 2, "thumbs")

    run_together(write)
    assert store.counts() == {"serve_completions": 120, "serve_assignments": 120, "serve_ratings": 120,
                              "serve_pairwise": 0}
