"""The app in a real headless Chromium over a real gateway and the session's real vLLM server.

Chat (streamed reply with its blend, thumbs up stored), one arena battle to a vote (names revealed, vote
stored), the experts tab (two experts side by side, each reply captioned) and the dashboard (an experiment's
counts, ratings and votes as the gateway reports them); a screenshot of each tab goes to `test-artifacts/ui/`.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from tests.ui.conftest import ADMIN_KEY, RunningGateway

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
REPLY_TIMEOUT_MS = 90_000


def rows(store: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(sql).fetchall()


def wait_rows(store: Path, sql: str, more_than: int = 0, timeout: float = 15.0) -> list[tuple]:
    """The rows of `sql` once there are more than `more_than` of them (earlier tests may have stored some)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(store, sql)
        if len(found) > more_than:
            return found
        time.sleep(0.2)
    return []


RATINGS = ("select r.completion_id, r.value, r.scale, c.model from serve_ratings r "
           "join serve_completions c on c.id = r.completion_id order by r.id")
VOTES = "select completion_a, completion_b, outcome from serve_pairwise order by id"


@pytest.fixture(scope="module")
def page(gateway: RunningGateway) -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Chromium not found at /usr/bin/chromium; run `bash scripts/setup.sh --test`.")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(f"{gateway.url}/")
        page.locator("#chat-input textarea").wait_for()
        try:
            yield page
        finally:
            browser.close()


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_chat_streams_a_reply_with_its_blend_and_stores_a_thumbs_up(page: Page, gateway: RunningGateway,
        artifacts_dir: Path) -> None:
    open_tab(page, "Chat")
    before = len(rows(gateway.store_path, RATINGS))
    page.locator("#chat-input textarea").fill("I lost my job today and I feel awful.")
    page.locator("#chat-input textarea").press("Enter")
    caption = page.locator("#chat-bot .empathy-caption").first
    caption.wait_for(timeout=REPLY_TIMEOUT_MS)
    assert "sensibility" in caption.inner_text() and "rationality" in caption.inner_text()
    page.locator("#chat-bot button[aria-label='Like']").last.click()
    page.get_by_text("feedback on this reply is stored").wait_for()
    stored = wait_rows(gateway.store_path, RATINGS, more_than=before)
    assert [row[1:] for row in stored[before:]] == [(1.0, "thumbs", "empathy")]  # one thumbs up, on the chat
    out = artifacts_dir / "ui"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "chat.png"), full_page=True)


def test_arena_battle_to_a_vote_reveals_names(page: Page, gateway: RunningGateway,
        artifacts_dir: Path) -> None:
    open_tab(page, "Arena")
    before = len(rows(gateway.store_path, VOTES))
    page.locator("#arena-input textarea").fill("My best friend moved away and I miss her.")
    page.locator("#arena-input textarea").press("Enter")
    vote = page.locator("#vote-left")
    page.wait_for_function("() => !document.querySelector('#vote-left').disabled", timeout=REPLY_TIMEOUT_MS)
    assert page.locator(".arena-name.revealed").count() == 0
    vote.click()
    page.locator(".arena-name.revealed").nth(1).wait_for()
    names = page.locator(".arena-name.revealed").all_inner_texts()
    assert len(names) == 2 and names[0] != names[1]
    votes = wait_rows(gateway.store_path, VOTES, more_than=before)
    assert [v[2] for v in votes[before:]] == ["a"]
    page.screenshot(path=str(artifacts_dir / "ui" / "arena.png"), full_page=True)


def bot_messages(page: Page, bot: str) -> list[str]:
    return page.locator(f"#{bot} .message").all_inner_texts()


def test_experts_tab_compares_two_experts(page: Page, artifacts_dir: Path) -> None:
    """Compare is on by default: sensibility on the left, rationality on the right, each reply captioned
    with the blend it came from."""
    open_tab(page, "Experts")
    page.locator("#experts-input textarea").fill("I am nervous about my exam tomorrow.")
    page.locator("#experts-input textarea").press("Enter")
    for bot, label in (("experts-bot-a", "100% sensibility / 0% rationality · fixed"),
                       ("experts-bot-b", "0% sensibility / 100% rationality · fixed")):
        caption = page.locator(f"#{bot} .empathy-caption").last
        caption.wait_for(timeout=REPLY_TIMEOUT_MS)
        assert caption.inner_text() == f"blend: {label}", bot
        texts = bot_messages(page, bot)
        assert "I am nervous about my exam tomorrow." in texts[0]
        reply = texts[-1].replace(caption.inner_text(), "").strip()
        assert reply and "⚠️" not in reply, texts
    page.screenshot(path=str(artifacts_dir / "ui" / "experts.png"), full_page=True)


def dashboard_rows(page: Page) -> dict[str, list[str]]:
    """The arms table's visible cells by arm. Gradio's Dataframe also renders a hidden sizing copy of the
    rows (`td`s with empty inner text), so read the grid cells of the grid's rows."""
    rows = page.locator("#dash-table [role=row]", has=page.locator("[role=gridcell]"))
    rows.first.wait_for()
    texts = [row.locator("[role=gridcell]").all_inner_texts() for row in rows.all()]
    return {cells[0].strip(): cells for cells in texts if cells}


def _dashboard_experiment(gateway: RunningGateway) -> str:
    """An experiment with known traffic: one completion per arm (named, as the arena does), a thumbs up
    for `warm`, and one vote `warm` beats `cool`."""
    name = f"dash-{uuid.uuid4().hex[:8]}"
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    arms = [{"name": "warm", "model": "empathy-sensibility"},
            {"name": "cool", "model": "empathy-rationality"}]
    assert httpx.post(f"{gateway.url}/v1/experiments", json={"name": name, "arms": arms},
                      headers=admin).status_code == 200
    ids = {}
    for arm in ("warm", "cool"):
        body = {"model": name, "messages": [{"role": "user", "content": "I miss my friend."}],
                "max_tokens": 2, "user": "dash-user", "empathy": {"arm": arm}}
        resp = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        ids[arm] = resp.json()["id"]
    for feedback in ({"type": "rating", "completion_id": ids["warm"], "value": 1},
                     {"type": "pairwise", "completion_a": ids["warm"], "completion_b": ids["cool"],
                      "outcome": "a"}):
        assert httpx.post(f"{gateway.url}/v1/feedback", json=feedback).status_code == 200
    return name


def test_dashboard_shows_the_experiment_results(page: Page, gateway: RunningGateway,
                                                artifacts_dir: Path) -> None:
    name = _dashboard_experiment(gateway)
    try:
        open_tab(page, "Dashboard")
        page.locator("#dash-refresh").click()
        summary = page.locator("#dash-summary")
        page.wait_for_function("name => document.querySelector('#dash-summary').innerText.includes(name)",
                               arg=name, timeout=30_000)
        text = summary.inner_text()
        assert f"{name} (active)" in text and "pairwise votes: 1" in text, text
        cells = dashboard_rows(page)
        # arm, model, traffic, users, completions, thumbs votes, thumbs share, win rate, ...
        assert [c.strip() for c in cells["warm"][:6]] == ["warm", "empathy-sensibility", "1", "0", "1", "1"]
        assert [c.strip() for c in cells["cool"][:6]] == ["cool", "empathy-rationality", "1", "0", "1", "0"]
        assert cells["warm"][6].strip().startswith("100%") and cells["warm"][7].strip().startswith("100%")
        page.screenshot(path=str(artifacts_dir / "ui" / "dashboard.png"), full_page=True)
    finally:  # an active experiment would change the arena's pairs for the tests that follow
        httpx.patch(f"{gateway.url}/v1/experiments/{name}", json={"active": False},
                    headers={"authorization": f"Bearer {ADMIN_KEY}"})
