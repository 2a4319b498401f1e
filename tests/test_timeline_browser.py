"""Issue 14: look at a call's timeline as a person would, in headless Chromium.

A call with a text turn, a tool call and a barge-in is recorded against the
local server and rendered; the page is opened from the file with the network
cut off (it must need nothing but itself), screenshotted into test-artifacts/
for the CI log, and checked: no console error, every lane and the main parts
of the page visible with a real size, and pointing at the cut part of the
answer shows its details.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from engine.core.states import CORE_MACHINES
from engine.timeline import render_file
from tests.browser import chromium, console_errors, screenshot
from tests.test_timeline import record_call

if TYPE_CHECKING:
    from playwright.sync_api import Browser

LANES = (
    *(f"machine:{name}" for name in CORE_MACHINES),
    "user",
    "assistant",
    "tools",
    "connection",
    "errors",
    "turns",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("timeline")
    recording = folder / "call.jsonl"
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may already run a loop in this thread
        pool.submit(anyio.run, record_call, recording).result(timeout=30)
    page = folder / "call.html"
    page.write_text(render_file(recording), encoding="utf-8")
    return page


def test_the_timeline_page_shows_every_lane_offline_without_errors(browser: Browser, timeline: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    try:
        page = context.new_page()
        errors = console_errors(page)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(timeline.as_uri(), wait_until="load")

        for selector in ("#timeline", "#summary", "#details", "#legend", "#turn-table", "#error-list"):
            box = page.locator(selector).bounding_box()
            assert page.locator(selector).is_visible(), selector
            assert box is not None and box["width"] > 0 and box["height"] > 0, selector
        for lane in LANES:
            locator = page.locator(f'#timeline g.lane[data-lane="{lane}"]')
            box = locator.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 10, lane
        assert page.locator("#timeline g.span").count() > 20
        assert page.locator("#turn-table tr").count() == 5  # a header and four turns

        cut = page.locator("#timeline g.span.cut")
        assert cut.count() == 1
        cut.hover()
        assert "cut, never heard" in page.locator("#details").inner_text()
        path = screenshot(page, "timeline", full_page=True)
        assert path.stat().st_size > 10_000

        assert errors == []
        assert requests == [timeline.as_uri()]  # the page fetched nothing but itself
    finally:
        context.close()
