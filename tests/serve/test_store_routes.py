"""Sticky routes under concurrency: requests of one new conversation that race to store its route do not fail
(real SQLAlchemy, on a SQLite file and on PostgreSQL); the first stored route stays, and every racer gets it
back (so all of them, on any gateway, use the same blend)."""

from __future__ import annotations

import threading

from serve.store import Store


def test_racing_route_inserts_do_not_fail(store: Store) -> None:
    errors: list[BaseException] = []
    got: dict[int, list[tuple[str, float | None, list[float] | None]]] = {r: [] for r in range(20)}
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        try:
            barrier.wait()
            for round_ in range(20):
                route = store.put_route(f"conv-{round_}", f"blend-{i}", 0.25 * (i % 5), [0.1 * i])
                got[round_].append(route)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for round_, returned in got.items():
        stored = store.get_route(f"conv-{round_}")
        assert stored is not None and returned == [stored] * 8
