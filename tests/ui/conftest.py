"""A real gateway (the teammate's `create_app`) with the UI mounted, served by uvicorn in a thread.

Upstream: the session's one real vLLM server (`vllm_server`), or a closed port for the resilience tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve.catalog import Catalog
from tests.conftest import free_port

ADMIN_KEY = "ui-admin-key"  # admin endpoints on (the dashboard test creates its experiment through them)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium_page(timeout_ms: float = 60_000) -> Iterator[Any]:
    """A page of a fresh headless Chromium (1280x900), closed at the end of the block."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Chromium not found at /usr/bin/chromium; run `bash scripts/setup.sh --test`.")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(timeout_ms)
        try:
            yield page
        finally:
            browser.close()


@dataclass(frozen=True)
class RunningGateway:
    url: str
    store_path: Path


def _catalog(adapters: dict[str, Path]) -> Catalog:
    return Catalog(experts={"sensibility": "empathy-sensibility", "rationality": "empathy-rationality"},
                   blends={0.0: "empathy-rationality", 1.0: "empathy-sensibility"},
                   paths={name: str(path) for name, path in adapters.items()}, rank=16)


def _serve(upstream: str, data_dir: Path, adapters: dict[str, Path]) -> Iterator[RunningGateway]:
    import uvicorn

    from empathy.settings import get_settings
    from serve.app import create_app

    port = free_port()
    settings = get_settings(data_dir=data_dir, upstreams=[upstream], host="127.0.0.1", port=port,
                            ui_enabled=True, health_interval=0.5, admin_key=ADMIN_KEY,
                            ui_max_tokens=24)  # a tiny random model: short replies keep the test fast
    app = create_app(settings, catalog=_catalog(adapters), mount_ui=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        raise RuntimeError(f"gateway on {url} did not come up")
    try:
        yield RunningGateway(url, data_dir / "empathy.db")
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def gateway(vllm_server: str, tiny_adapters: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """Gateway + UI over the session's real vLLM server."""
    yield from _serve(vllm_server, tmp_path_factory.mktemp("ui-gateway"), tiny_adapters)


@pytest.fixture(scope="session")
def down_gateway(tiny_adapters: dict[str, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """Gateway + UI whose only upstream does not answer (an engine that is restarting)."""
    yield from _serve(f"http://127.0.0.1:{free_port()}", tmp_path_factory.mktemp("ui-down"), tiny_adapters)
