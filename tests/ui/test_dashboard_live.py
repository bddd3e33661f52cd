"""The dashboard of a live experiment in Chromium: each pair's confidence sequence with its decision and the
sample-ratio alarm, from the real gateway's results over its real SQLite store.

No engine: the gateway's upstream is down (`down_gateway`), the completions the proxy would have recorded
are written through the gateway's own `Store`, and the ratings and votes go through `POST /v1/feedback`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page
from sqlalchemy import create_engine

from serve.store import Completion, Store
from tests.ui.conftest import ADMIN_KEY, RunningGateway, chromium_page

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARMS = {"warm": ("empathy-sensibility", 0.75), "cool": ("empathy-rationality", 0.5)}


def _live_experiment(gateway: RunningGateway, rng: np.random.Generator) -> str:
    """A 50/50 experiment whose 300 users split 60/40 (a broken split), where `warm` gets more thumbs up,
    writes longer replies and wins two votes in three."""
    name = f"live-{uuid.uuid4().hex[:6]}"
    arms = [{"name": arm, "model": model} for arm, (model, _) in ARMS.items()]
    resp = httpx.post(f"{gateway.url}/v1/experiments", json={"name": name, "arms": arms},
                      headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert resp.status_code == 200, resp.text
    store = Store(create_engine(f"sqlite:///{gateway.store_path}"))
    ids: dict[str, list[str]] = {arm: [] for arm in ARMS}
    lengths = np.random.default_rng(11)  # reply tokens (their own stream: `rng` draws the same as before)
    for i in range(300):
        arm = "warm" if i % 5 < 3 else "cool"
        store.add_assignment(name, f"user-{i}", arm)
        cid = f"cmpl-{name}-{i}"
        store.add_completion(Completion(cid, ARMS[arm][0], ARMS[arm][0], None, "experiment", name, arm,
                                        f"user-{i}", 900.0, 120.0, True,
                                        completion_tokens=int(lengths.integers(60, 140) if arm == "warm"
                                                              else lengths.integers(30, 110))))
        ids[arm].append(cid)
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for arm, cids in ids.items():
            for cid in cids[:100]:
                value = int(rng.random() < ARMS[arm][1])
                assert client.post("/v1/feedback", json={"type": "rating", "completion_id": cid,
                                                         "value": value}).status_code == 200
        for k in range(200):
            warm, cool = ids["warm"][k % len(ids["warm"])], ids["cool"][k % len(ids["cool"])]
            warm_wins = rng.random() < 0.67
            left, right = (warm, cool) if k % 2 else (cool, warm)
            outcome = "a" if (left == warm) == warm_wins else "b"
            vote = {"type": "pairwise", "completion_a": left, "completion_b": right, "outcome": outcome,
                    "user": f"voter-{k % 40}"}
            assert client.post("/v1/feedback", json=vote).status_code == 200
    return name


@pytest.fixture()
def page(down_gateway: RunningGateway) -> Iterator[Page]:
    with chromium_page() as page:
        yield page


def test_dashboard_shows_sequences_decisions_and_the_srm_alarm(page: Page, down_gateway: RunningGateway,
                                                               artifacts_dir: Path) -> None:
    name = _live_experiment(down_gateway, np.random.default_rng(5))
    try:
        results = httpx.get(f"{down_gateway.url}/v1/experiments/{name}/results", timeout=60).json()
        assert results["srm"]["mismatch"] is True
        assert {p["metric"]: p["decision"] for p in results["pairs"]}["win_rate"] == "warm ahead"
        assert results["length_control"]["votes"] == 200
        assert all(arm["bradley_terry_lc"]["rating"] > 0 for arm in results["arms"])
        page.goto(f"{down_gateway.url}/")
        page.get_by_role("tab", name="Dashboard").click()
        page.locator("#dash-refresh").click()
        page.wait_for_function("name => document.querySelector('#dash-summary').innerText.includes(name)",
                               arg=name, timeout=60_000)
        text = page.locator("#dash-summary").inner_text()
        assert "Sample-ratio mismatch" in text and "warm vs cool · win_rate: warm ahead" in text, text
        assert "Reply length (200 votes)" in text and "Elo at equal length: warm" in text, text
        page.wait_for_function("() => !document.body.innerText.includes('processing')", timeout=120_000)
        page.locator("#dash-sequences img, #dash-sequences canvas, #dash-sequences svg").first.wait_for()
        out = artifacts_dir / "ui" / "dashboard_live.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        print(f"dashboard screenshot: {out}")
    finally:  # an active experiment would change the arena's pairs for the tests that follow
        httpx.patch(f"{down_gateway.url}/v1/experiments/{name}", json={"active": False},
                    headers={"authorization": f"Bearer {ADMIN_KEY}"})
