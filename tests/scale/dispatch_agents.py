"""Agents the dispatcher tests place (imported by path on the Ray hosts: ``tests.scale.dispatch_agents:...``).

``weather`` greets and has two tools: ``get_weather`` (on a call's first host it
takes ``metadata["tool_seconds"]`` seconds, a window to kill that host in) and
``block_loop`` (a badly written tool: it blocks the host's event loop for
``metadata["block_seconds"]``).
"""

from __future__ import annotations

import time

import anyio

import engine
from engine.gateway.agent import Agent
from engine.scale.spec import current_call

GREETING = "Hello! How can I help you?"  # the local server's answer to an empty conversation


def weather() -> Agent:
    """The greeting weather agent (a factory: each host builds its own)."""
    agent = Agent(
        config=engine.SessionConfig(instructions="weather bot"),
        settings=engine.SessionSettings(ready_timeout=5, close_timeout=1),
        greet=True,
    )

    @agent.tool
    async def get_weather(city: str) -> dict[str, object]:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        call = current_call()
        if call.attempt == 0:
            await anyio.sleep(float(call.metadata.get("tool_seconds", "0")))
        return {"city": city, "temp_c": 21}

    @agent.tool
    async def block_loop() -> str:
        """Block the loop (a tool that should have been sync)."""
        time.sleep(float(current_call().metadata.get("block_seconds", "0")))  # noqa: ASYNC251 (on purpose)
        return "done"

    return agent


def manual() -> Agent:
    """An agent with manual turns (no VAD): the caller commits its own audio."""
    return Agent(config=engine.SessionConfig(instructions="manual", turn_detection=None))


not_an_agent = 42


def hangs_up() -> Agent:
    """An agent that may end the call itself (the built-in ``end_call`` tool of the call policy)."""
    policy = engine.CallPolicy(end_call=True, drain_margin=0.2)
    settings = engine.SessionSettings(call_policy=policy, close_timeout=1)
    return Agent(config=engine.SessionConfig(instructions="hangs up"), settings=settings)
