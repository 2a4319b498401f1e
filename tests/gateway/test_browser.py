"""The browser page in a real browser: talk to the gateway, watch the states, barge in.

Headless Chromium (tests/browser.py) with a WAV file as its microphone: a
question, a pause while the assistant answers, then a barge-in. The gateway
runs in-process (under asyncio, then trio) in a blocking portal's thread, with
the local realtime server streaming in real time (its VAD hears the WAV; the
transcripts are scripted with ``say_next``). Playwright's sync API drives the
page from the test's thread.
"""

from __future__ import annotations

import array
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

import engine
from engine.core import events as ev
from engine.demo import speech
from tests.browser import chromium, console_errors, screenshot
from tests.gateway.serving import Seen, Served, running_gateway, weather_agent

RATE = 24000
QUESTION = "What's the weather in Paris?"
BARGE_IN = "Stop, thank you."
FRAME_MS = 20  # the page reports its play position at least every 20 ms of audio

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def _silence(seconds: float) -> bytes:
    return bytes(int(RATE * seconds) * 2)


def conversation_wav(path: Path) -> Path:
    """The microphone: 1 s of silence, a question, 1.9 s of silence (the answer starts), a barge-in, silence.

    ``speech`` pads each utterance with 0.2 s of silence before and 0.8 s after.
    """
    pcm = _silence(1.0) + speech(0.8, rate=RATE) + _silence(1.1) + speech(0.6, rate=RATE) + _silence(12)
    samples = array.array("h")
    samples.frombytes(pcm)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    wav = conversation_wav(tmp_path_factory.mktemp("microphone") / "conversation.wav")
    with chromium(fake_audio=wav) as b:
        yield b


@contextmanager
def gateway(backend: str, agent: Any) -> Iterator[tuple[BlockingPortal, Served]]:
    """An in-process gateway (local server in real time) on its own event loop thread."""
    with start_blocking_portal(backend=backend) as portal:
        served_cm = running_gateway(agent, pace=1.0)
        with portal.wrap_async_context_manager(served_cm) as served:
            yield portal, served


def wait_in(portal: BlockingPortal, done: Callable[[], bool], seen: Seen, timeout: float = 10) -> None:
    """Wait on the gateway's loop until ``done()`` holds (re-checked at each agent event)."""

    async def wait() -> None:
        with anyio.fail_after(timeout):
            await seen.until(done)

    portal.call(wait)


def acknowledgements(agent: Any) -> tuple[list[tuple[str, int]], list[int]]:
    """Record every ``audio_played`` the call's session gets, and how many it had at the barge-in."""
    acked: list[tuple[str, int]] = []
    at_cut: list[int] = []
    make = agent.session

    def session(*args: Any, **kwargs: Any) -> Any:
        built = make(*args, **kwargs)
        played = built.audio_played

        def audio_played(item_id: str, ms: float) -> None:
            acked.append((item_id, int(ms)))
            played(item_id, ms)

        built.audio_played = audio_played
        built.on(ev.Interrupted)(lambda _: at_cut.append(len(acked)))
        return built

    agent.session = session
    return acked, at_cut


def page_events(page: Page, kind: str) -> list[dict[str, Any]]:
    return [e for e in page.evaluate("engineView.events") if e["kind"] == kind]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_talk_watch_the_states_and_barge_in(browser: Browser, backend: str) -> None:
    seen = Seen()
    agent = weather_agent(settings=engine.SessionSettings(ready_timeout=3, close_timeout=1))
    agent.on()(seen)
    acked, acked_at_cut = acknowledgements(agent)
    with gateway(backend, agent) as (portal, served):
        served.server.say_next(QUESTION)
        served.server.say_next(BARGE_IN)
        page = browser.new_page(viewport={"width": 1400, "height": 680})
        errors = console_errors(page)
        page.goto(f"http://127.0.0.1:{served.port}/")
        page.wait_for_selector("#diagram svg .state")
        page.click("#talk")
        page.wait_for_function("engineView.connected", timeout=5000)
        call_id = page.evaluate("engineView.callId")
        assert page.inner_text("#call-id") == call_id

        # The question is heard: interim words, then the final transcript.
        page.wait_for_selector("#transcript li.user.final", timeout=8000)
        assert page.inner_text("#transcript li.user.final") == QUESTION
        users = page_events(page, "user")
        assert not users[0]["final"] and users[-1]["final"]

        # The tool runs, the answer plays and the page acknowledges it; then the barge-in.
        page.wait_for_function("engineView.flushes.length > 0", timeout=10000)
        wait_in(portal, lambda: bool(seen.of(ev.Interrupted)), seen)
        cut = seen.of(ev.Interrupted)[0]
        flushed = page.evaluate("engineView.flushes[0]")
        acks = [a for a in page.evaluate("engineView.acks") if a["item"] == cut.item_id]
        assert acks and cut.played_ms is not None and acked_at_cut
        assert flushed["item"] == cut.item_id
        # The truncation is what the page acknowledged: exactly one of its reports, and within one
        # frame of the latest the session had received when it cut (reports come every 10 ms).
        assert cut.played_ms in {ms for item, ms in acked if item == cut.item_id}
        latest = max(ms for item, ms in acked[: acked_at_cut[0]] if item == cut.item_id)
        assert latest - FRAME_MS <= cut.played_ms <= latest
        # The player stopped at once: nothing of the item played after the flush.
        assert max(a["ms"] for a in acks) == flushed["ms"]

        def truncated() -> bool:
            conversation = served.server.connections[0].conversation
            return conversation.audio_ms.get(cut.item_id or "") == cut.played_ms

        wait_in(portal, truncated, seen)  # the server truncated the item at that position
        note = page.inner_text("#transcript li.assistant.cut .cut-note")  # the answer is shown cut
        assert note == f"(cut at {cut.played_ms} ms)"

        # Each state change appeared on the page, in the order the session went through them.
        page.wait_for_function(
            "engineView.events.filter(e => e.kind === 'state' && e.machine === 'conversation')"
            ".slice(-1)[0].new === 'user_speaking'"
        )
        shown = [(e["old"], e["new"]) for e in page_events(page, "state") if e["machine"] == "conversation"]
        session_changes = [(e.old.value, e.new.value) for e in seen.of(ev.StateChanged)]
        assert shown == session_changes[-len(shown) :]
        path = [new for _, new in shown]
        assert path[:3] == ["session_ready", "user_speaking", "responding"]
        assert path[-1] == "user_speaking"
        log = page.inner_text("#states")
        assert "conversation: session_ready → user_speaking" in log
        active = page.evaluate(
            "[...document.querySelectorAll('#diagram .state.active')]"
            ".map(n => n.dataset.machine + ':' + n.dataset.state)"
        )
        assert "conversation:user_speaking" in active

        # The tool call with its arguments and result; the first turn's latency with "first played".
        page.wait_for_selector("#tools tbody tr")
        assert "Paris" in page.inner_text("#tools tbody tr td:nth-child(2)")
        assert '"temp_c": 21' in page.inner_text("#tools tbody tr td:nth-child(3)")
        page.wait_for_selector("#latency tbody tr")
        first_turn = page.inner_text("#latency tbody tr").split("\t")
        assert first_turn[2].isdigit()  # first played: measured from the page's acknowledgements

        screenshot(page, f"live-view-{backend}", full_page=True)

        # The operator's list shows the call; its watch view replays it read-only, states included.
        operator = browser.new_page(viewport={"width": 1400, "height": 1000})
        operator_errors = console_errors(operator)
        operator.goto(f"http://127.0.0.1:{served.port}/calls")
        row = operator.wait_for_selector(f'#calls tr[data-call="{call_id}"]')
        assert row is not None and "browser" in row.inner_text()
        operator.click(f'#calls tr[data-call="{call_id}"] a')
        operator.wait_for_function("engineView.connected && engineView.events.length > 0")
        assert operator.inner_text("#mode") == f"watching {call_id} (read-only)"
        operator.wait_for_selector("#transcript li.user.final")
        assert operator.inner_text("#transcript li.user.final") == QUESTION
        assert operator.is_hidden("#talk")
        operator.close()
        page.click("#hangup")
        page.wait_for_function("engineView.closed", timeout=5000)
        page.close()
        assert errors == []
        assert operator_errors == []
