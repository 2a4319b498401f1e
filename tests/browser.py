"""Headless Chromium for the tests that look at a page: Playwright (sync API) on the system browser.

Playwright's own browser download is not used (it is unreachable here): the
Debian ``chromium`` package at ``/usr/bin/chromium`` (or ``ENGINE_CHROMIUM``)
is launched headless with a fresh temporary profile. ``fake_audio`` feeds a WAV
file as the microphone (Chromium's fake-media flags; the permission prompt is
auto-accepted). Without Chromium or Playwright a test skips with the reason;
under ``CI=true`` it fails instead, so CI can never pass by skipping.

Use it from a sync test (Playwright's sync API refuses a running event loop;
serve what the page talks to from a thread)::

    @pytest.fixture(scope="module")
    def browser() -> Iterator[Browser]:
        with chromium(fake_audio=WAV) as b:
            yield b
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("ENGINE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # gitignored; CI keeps it

BASE_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)


def chromium_args(fake_audio: Path | None = None) -> list[str]:
    """The command-line flags: headless, offline-quiet, and (with a WAV) a fake microphone."""
    args = list(BASE_ARGS)
    if fake_audio is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_audio}",
        ]
    return args


def missing() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)) and shutil.which(str(CHROMIUM)) is None:
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set ENGINE_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install '.[test]')"
    return None


def need_chromium() -> None:
    """Skip the test with the reason when the browser is missing; under CI=true, fail instead."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium(fake_audio: Path | None = None, **launch: Any) -> Iterator[Browser]:
    """A launched headless Chromium (closed at the end); skips or fails per :func:`need_chromium`."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(fake_audio), **launch)
        try:
            yield browser
        finally:
            browser.close()


def console_errors(page: Page) -> list[str]:
    """A list that fills with the page's console errors and uncaught exceptions as they happen."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors


def screenshot(page: Page, name: str, **options: Any) -> Path:
    """Save a PNG of the page under test-artifacts/ (created) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path
