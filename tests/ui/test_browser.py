"""The app in a real headless Chromium over a real gateway and the session's real vLLM server.

Chat (streamed reply with its blend, thumbs up stored), one arena battle to a vote (names revealed, vote
stored), the experts tab and the dashboard; a screenshot of each tab goes to `test-artifacts/ui/`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.ui.conftest import RunningGateway

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
REPLY_TIMEOUT_MS = 90_000


def rows(store: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(sql).fetchall()


def wait_rows(store: Path, sql: str, timeout: float = 15.0) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(store, sql)
        if found:
            return found
        time.sleep(0.2)
    return []


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
    page.locator("#chat-input textarea").fill("I lost my job today and I feel awful.")
    page.locator("#chat-input textarea").press("Enter")
    caption = page.locator("#chat-bot .empathy-caption").first
    caption.wait_for(timeout=REPLY_TIMEOUT_MS)
    assert "sensibility" in caption.inner_text() and "rationality" in caption.inner_text()
    page.locator("#chat-bot button[aria-label='Like']").last.click()
    page.get_by_text("feedback on this reply is stored").wait_for()
    stored = wait_rows(gateway.store_path, "select completion_id, value, scale from serve_ratings")
    assert stored and stored[0][1] == 1.0
    out = artifacts_dir / "ui"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "chat.png"), full_page=True)


def test_arena_battle_to_a_vote_reveals_names(page: Page, gateway: RunningGateway,
        artifacts_dir: Path) -> None:
    open_tab(page, "Arena")
    page.locator("#arena-input textarea").fill("My best friend moved away and I miss her.")
    page.locator("#arena-input textarea").press("Enter")
    vote = page.locator("#vote-left")
    page.wait_for_function("() => !document.querySelector('#vote-left').disabled", timeout=REPLY_TIMEOUT_MS)
    assert page.locator(".arena-name.revealed").count() == 0
    vote.click()
    page.locator(".arena-name.revealed").nth(1).wait_for()
    names = page.locator(".arena-name.revealed").all_inner_texts()
    assert len(names) == 2 and names[0] != names[1]
    votes = wait_rows(gateway.store_path, "select completion_a, completion_b, outcome from serve_pairwise")
    assert votes and votes[0][2] == "a"
    page.screenshot(path=str(artifacts_dir / "ui" / "arena.png"), full_page=True)


def test_experts_and_dashboard_tabs(page: Page, gateway: RunningGateway,
        artifacts_dir: Path) -> None:
    open_tab(page, "Experts")
    page.locator("#experts-input textarea").fill("I am nervous about my exam tomorrow.")
    page.locator("#experts-input textarea").press("Enter")
    page.locator("#experts-bot-b .empathy-caption, #experts-bot-b .message").last.wait_for(
        timeout=REPLY_TIMEOUT_MS)
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "ui" / "experts.png"), full_page=True)
    open_tab(page, "Dashboard")
    page.locator("#dash-summary").wait_for()
    page.locator("#dash-refresh").click()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts_dir / "ui" / "dashboard.png"), full_page=True)
