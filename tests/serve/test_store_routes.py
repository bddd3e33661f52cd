"""Sticky routes under concurrency: requests of one new conversation that race to store its route do not fail
(real SQLAlchemy, on a SQLite file and on PostgreSQL); the first stored route stays, and every racer gets it
back (so all of them, on any gateway, use the same blend)."""

from __future__ import annotations

from serve.store import Store
from tests.serve.conftest import run_together


def test_racing_route_inserts_do_not_fail(store: Store) -> None:
    got: dict[int, list[tuple[str, float | None, list[float] | None]]] = {r: [] for r in range(20)}

    def put(i: int) -> None:
        for round_ in range(20):
            got[round_].append(store.put_route(f"conv-{round_}", f"blend-{i}", 0.25 * (i % 5), [0.1 * i]))

    run_together(put)
    for round_, returned in got.items():
        stored = store.get_route(f"conv-{round_}")
        assert stored is not None and returned == [stored] * 8
