"""Call policies end to end against the local server: the idle policy reprompts, says goodbye and
ends the call once the goodbye was played; the maximum call length warns, then ends it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from engine.core.policy import CallPolicy
from engine.server import LocalServer

pytestmark = pytest.mark.anyio


async def run_call(
    policy: CallPolicy, *, acknowledge: bool, say: str | None = None
) -> tuple[list[Any], list[str]]:
    """A call nobody speaks in, until the policy ends it: its events, and the order of what happened."""
    server = LocalServer(pace=0, ping_interval=None)
    settings = engine.SessionSettings(close_timeout=0.5, call_policy=policy)
    seen: list[Any] = []
    log: list[str] = []
    played: dict[str, float] = defaultdict(float)
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(
                engine.OpenAI(api_key="sk-local", url=server.openai_url()), settings=settings
            )

            @session.on(ev.AudioOut)
            def speaker(chunk: ev.AudioOut) -> None:  # plays at once and says so
                if acknowledge and chunk.item_id is not None:
                    played[chunk.item_id] += chunk.duration_ms
                    log.append(f"played {chunk.response_id}")
                    session.audio_played(chunk.item_id, played[chunk.item_id])

            async with session.events() as stream, session.connect():
                if say is not None:
                    await session.send_text(say)
                async for event in stream:
                    if not isinstance(event, ev.AudioOut):
                        seen.append(event)
                    if isinstance(event, ev.ResponseDone):
                        log.append(f"done {event.response_id}")
                    if isinstance(event, ev.Closed):
                        log.append("closed")
    return seen, log


async def test_idle_reprompts_then_says_goodbye_and_hangs_up_after_it_was_played() -> None:
    seen, log = await run_call(CallPolicy(idle_after=0.2, reprompts=1, drain_margin=60), acknowledge=True)
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert len(done) == 2  # the reprompt, then the goodbye
    closed = seen[-1]
    assert isinstance(closed, ev.Closed) and closed.reason == "call ended by policy: idle"
    assert closed.error is None  # a normal end
    # Ended on the player's acknowledgement (the estimate's margin is 60 s, the test's bound 10 s),
    # and only after the goodbye's last chunk was played.
    goodbye = done[-1].response_id
    assert log.index("closed") > max(i for i, line in enumerate(log) if line == f"played {goodbye}")


async def test_without_acknowledgements_the_estimate_ends_it() -> None:
    seen, _ = await run_call(CallPolicy(idle_after=0.1, reprompts=0, drain_margin=0), acknowledge=False)
    assert len([e for e in seen if isinstance(e, ev.ResponseDone)]) == 1  # the goodbye only
    assert seen[-1] == ev.Closed(reason="call ended by policy: idle")


async def test_the_maximum_length_warns_then_ends() -> None:
    seen, _ = await run_call(CallPolicy(max_duration=0.5, warn_before=0.4), acknowledge=True)
    assert len([e for e in seen if isinstance(e, ev.ResponseDone)]) == 1  # the warning
    assert seen[-1] == ev.Closed(reason="call ended by policy: max_duration")


async def test_end_call_hangs_up_after_the_goodbye_was_played() -> None:
    """The local assistant calls end_call (it fits the words); the follow-up is the goodbye."""
    seen, log = await run_call(
        CallPolicy(end_call=True, drain_margin=60), acknowledge=True, say="end the call"
    )
    calls = [e for e in seen if isinstance(e, ev.ToolCall)]
    assert [c.name for c in calls] == ["end_call"]  # the built-in tool was declared and called
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert len(done) == 2  # the call, then the goodbye (the follow-up after the tool's output)
    assert seen[-1] == ev.Closed(reason="call ended by policy: end_call")
    assert log.index("closed") > max(
        i for i, line in enumerate(log) if line == f"played {done[-1].response_id}"
    )
