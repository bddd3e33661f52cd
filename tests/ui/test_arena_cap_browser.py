"""The arena in Chromium over the real gateway and vLLM: the browser keeps one voter id across page loads
(every vote carries it), and a voter past the daily cap sees the gateway's message, with the vote buttons
off; screenshot `test-artifacts/ui/arena_vote_cap.png`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page
from sqlalchemy import create_engine

from serve.api.feedback import utc_day
from serve.store import Completion, Store
from tests.ui.conftest import RunningGateway, chromium_page

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPLY_TIMEOUT_MS = 120_000
CAP = 200  # the default EMPATHY_VOTES_PER_VOTER_PER_DAY


@pytest.fixture()
def page(gateway: RunningGateway) -> Iterator[Page]:
    with chromium_page() as page:
        yield page


def battle_to_a_vote(page: Page, url: str, message: str) -> None:
    page.goto(f"{url}/")
    page.get_by_role("tab", name="Arena").click()
    page.locator("#arena-input textarea").fill(message)
    page.locator("#arena-input textarea").press("Enter")
    page.wait_for_function("() => !document.querySelector('#vote-left').disabled", timeout=REPLY_TIMEOUT_MS)
    page.locator("#vote-left").click()


def votes_of(store: Path, voter: str) -> int:
    with sqlite3.connect(store) as db:
        return int(db.execute("select count(*) from serve_pairwise where voter = ?", (voter,)).fetchone()[0])


def fill_today(store_path: Path, voter: str, tag: str) -> None:
    """Votes of `voter` today up to the cap, on completions of their own (as if cast earlier)."""
    store = Store(create_engine(f"sqlite:///{store_path}"))
    day = utc_day(time.time())[0]
    for k in range(CAP - votes_of(store_path, voter)):
        pair = [f"cmpl-{tag}-{k}-{side}" for side in "ab"]
        for cid in pair:
            store.add_completion(Completion(cid, "base", "base", None, "direct", None, None, "s", 1.0, None,
                                            True))
        store.add_pairwise(pair[0], pair[1], "tie", voter, 0, day)


def test_the_browser_keeps_its_voter_and_sees_the_cap(page: Page, gateway: RunningGateway,
                                                      artifacts_dir: Path) -> None:
    battle_to_a_vote(page, gateway.url, "My best friend moved away and I miss her.")
    page.locator(".arena-name.revealed").nth(1).wait_for()
    with sqlite3.connect(gateway.store_path) as db:
        (voter,) = db.execute("select voter from serve_pairwise order by id desc limit 1").fetchone()
    assert voter.startswith("user:voter-")
    fill_today(gateway.store_path, voter, voter[-12:])

    battle_to_a_vote(page, gateway.url, "I failed my driving test again.")  # a new page load, same browser
    page.wait_for_function("() => document.querySelector('#arena-status').innerText.includes('not stored')")
    status = page.locator("#arena-status").inner_text()
    assert f"this voter has cast {CAP} votes today" in status and "00:00 UTC" in status, status
    assert page.locator("#vote-left").is_disabled() and page.locator("#vote-tie").is_disabled()
    assert page.locator(".arena-name.revealed").count() == 0  # a refused vote reveals nothing
    assert votes_of(gateway.store_path, voter) == CAP  # the same voter id after the reload; nothing stored
    out = artifacts_dir / "ui" / "arena_vote_cap.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    print(f"arena vote-cap screenshot: {out}")
