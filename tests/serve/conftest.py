"""The gateway under test: the real app (in-process uvicorn on a free port) over the session's real vLLM
server, which the session's `EngineSupervisor` owns (so the fault test can kill it and watch it return)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from openai import OpenAI

from tests.conftest import free_port

API_KEY = "test-key"
ADMIN_KEY = "admin-key"


@dataclass
class Running:
    url: str
    app: FastAPI

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def client(self, key: str | None = API_KEY, **kwargs: Any) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0, **kwargs)

    def rows_written(self) -> None:
        """Wait until the completion rows of the replies that have ended are in the store (the gateway
        writes them behind the replies: `serve.completion_writer`)."""
        writer = self.gateway.writer
        if writer is not None:
            asyncio.run_coroutine_threadsafe(writer.written(), writer.loop).result(30)


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Run `app` with uvicorn in a thread (lifespan included) until the block ends."""
    port = free_port()
    # Keep-alive longer than the clients' (httpx: 5 s), so a client never sends on a connection the server
    # is closing at that moment (a ReadError no gateway could prevent).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def make_settings(tmp: Path, data_dir: Path, **overrides: Any) -> Any:
    from empathy.settings import get_settings

    """Gateway settings for a test; an override of None unsets that field (e.g. `admin_key=None`)."""
    fields = {"data_dir": str(data_dir), "store_url": f"sqlite:///{tmp / 'gateway.db'}", "ui_enabled": False,
              "api_keys": [API_KEY], "admin_key": ADMIN_KEY, "health_interval": 0.5, **overrides}
    return get_settings(**fields)


@pytest.fixture(scope="session")
def tiny_router(tiny_artifacts: Path) -> Any:
    """A real `empathy.router.Router` (real MiniLM encoder, on the runtime the gateway runs it on by default)
    with fixed random weights over the served grid: the gateway runs it exactly as it runs a trained one."""
    from empathy.router import EMBED_DIM, EXTRA_FEATURES, Router, RouterWeights
    from empathy.settings import get_settings
    from serve.catalog import load_catalog
    from serve.state import router_encoder, router_recheck

    grid = load_catalog(tiny_artifacts).grid
    dim = EMBED_DIM + len(EXTRA_FEATURES)
    rng = np.random.default_rng(0)
    weights = RouterWeights(mean=np.zeros(dim, np.float32), std=np.ones(dim, np.float32),
                            W=rng.normal(0, 1, (dim, len(grid))).astype(np.float32),
                            b=np.zeros(len(grid), np.float32))
    settings = get_settings()
    return Router(grid, weights, {"format_version": 1, "grid": grid}, router_encoder(settings),
                  router_recheck(settings))


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path, engine_supervisor: Any,
            tiny_router: Any) -> Iterator[Running]:
    from serve.app import create_app

    settings = make_settings(tmp_path_factory.mktemp("gateway"), tiny_artifacts)
    app = create_app(settings, supervisor=engine_supervisor, router=tiny_router)
    with serve_app(app) as url:
        yield Running(url, app)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the session (`tests/serve/postgres.py`), started on first use."""
    from tests.serve.postgres import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store database on each backend: a SQLite file, or a new database on the session's
    PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """A `serve.store.Store` over `store_url` (schema made by its migrations), once per backend."""
    from empathy.db import make_engine
    from serve.store import Store

    engine = make_engine(store_url)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def run_together(work: Callable[[int], None], workers: int = 8) -> None:
    """`work(0)` ... `work(workers - 1)` in threads released at once; re-raises the first error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
