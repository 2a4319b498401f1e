"""The cost budget end to end against the local server, under both backends priced by the OpenAI
profile's table: a call whose second turn leaves no room for a third says a goodbye, and ends once
the goodbye was played, with reason ``budget``; with ``budget_action="rollover"`` it speaks a notice
and rolls the server session over instead, and the call goes on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

import engine
from engine import events as ev
from engine.core.policy import CallPolicy
from engine.profiles import INWORLD, OPENAI
from engine.server import LocalServer

pytestmark = pytest.mark.anyio

Provider = Callable[[LocalServer], Any]
BACKENDS = [
    pytest.param(lambda s: engine.OpenAI(api_key="sk-local", url=s.openai_url()), id="openai"),
    pytest.param(
        lambda s: engine.Inworld(
            api_key="sk-local", url=s.url(), profile=attrs.evolve(INWORLD, prices=OPENAI.prices)
        ),
        id="inworld",
    ),
]
SAID = ("hello there", "tell me something")


async def two_turns(
    provider: Provider, policy: CallPolicy | None, *, until: type | None = None
) -> tuple[list[Any], list[str]]:
    """The user says two things, one after the other's turn; then the call runs until it is closed
    (without a policy: by the test after the second turn; ``until``: by the test at that event).
    Its events (no audio), and the order of what happened."""
    server = LocalServer(pace=0, ping_interval=None)
    settings = engine.SessionSettings(close_timeout=0.5, call_policy=policy)
    seen: list[Any] = []
    log: list[str] = []
    played: dict[str, float] = defaultdict(float)
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(provider(server), settings=settings)

            @session.on(ev.AudioOut)
            def speaker(chunk: ev.AudioOut) -> None:  # plays at once and says so
                if chunk.item_id is not None:
                    played[chunk.item_id] += chunk.duration_ms
                    log.append(f"played {chunk.response_id}")
                    session.audio_played(chunk.item_id, played[chunk.item_id])

            async with session.events() as stream, session.connect():
                await session.send_text(SAID[0])
                turns = 0
                async for event in stream:
                    if not isinstance(event, ev.AudioOut):
                        seen.append(event)
                    if until is not None and isinstance(event, until):
                        break
                    if isinstance(event, ev.TurnMetrics):
                        turns += 1
                        if turns == 1:
                            await session.send_text(SAID[1])
                        elif turns == 2 and policy is None:
                            break
                    elif isinstance(event, ev.ResponseDone):
                        log.append(f"done {event.response_id}")
                    elif isinstance(event, ev.Closed):
                        log.append("closed")
    return seen, log


@pytest.mark.parametrize("provider", BACKENDS)
async def test_a_budget_two_turns_exceed_ends_the_call_after_a_spoken_goodbye(provider: Provider) -> None:
    # The same scripted call without a budget: what its turns cost (the local server is deterministic).
    unbounded, _ = await two_turns(provider, None)
    costs = [e.cost for e in unbounded if isinstance(e, ev.TurnMetrics)]
    assert len(costs) == 2 and all(c is not None and c > 0 for c in costs)
    assert costs[1] >= costs[0]  # the second turn's input holds the first
    # Room for two turns at the first's cost: after the first, the second fits; after the
    # second, a third (at the average) would not.
    policy = CallPolicy(budget=2 * costs[0], budget_warning_at=0, drain_margin=60)
    seen, log = await two_turns(provider, policy)
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert len(done) == 3  # the two answers, then the goodbye the budget asked for
    metrics = [e for e in seen if isinstance(e, ev.TurnMetrics)]
    assert [m.cost for m in metrics[:2]] == pytest.approx(costs)
    assert seen[-1] == ev.Closed(reason="call ended by policy: budget")
    # Ended on the player's acknowledgement (the estimate's margin is 60 s, the bound 10 s),
    # after the goodbye's last chunk was played.
    goodbye = done[-1].response_id
    assert f"played {goodbye}" in log
    assert log.index("closed") > max(i for i, line in enumerate(log) if line == f"played {goodbye}")


@pytest.mark.parametrize("provider", BACKENDS)
async def test_a_budget_that_rolls_over_speaks_a_notice_then_starts_a_fresh_server_session(
    provider: Provider,
) -> None:
    unbounded, _ = await two_turns(provider, None)
    first = next(e.cost for e in unbounded if isinstance(e, ev.TurnMetrics))
    assert first is not None
    policy = CallPolicy(budget=2 * first, budget_action="rollover", budget_warning_at=0)
    seen, _ = await two_turns(provider, policy, until=ev.Reconnected)
    kinds = [type(e).__name__ for e in seen if isinstance(e, (ev.ResponseDone, ev.Reconnected, ev.Closed))]
    assert kinds == ["ResponseDone", "ResponseDone", "ResponseDone", "Reconnected"]  # two answers, the notice
