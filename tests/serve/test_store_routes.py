"""Sticky routes under concurrency: requests of one new conversation that race to store its route do not fail
(real SQLAlchemy, on a SQLite file and on PostgreSQL); the first stored route stays."""

from __future__ import annotations

import threading

from serve.store import Store


def test_racing_route_inserts_do_not_fail(store: Store) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        try:
            barrier.wait()
            for round_ in range(20):
                store.put_route(f"conv-{round_}", f"blend-{i}", 0.25 * (i % 5), [0.2] * 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    routes = [store.get_route(f"conv-{r}") for r in range(20)]
    assert all(r is not None and r[2] == [0.2] * 5 for r in routes)
