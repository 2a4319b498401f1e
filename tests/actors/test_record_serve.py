"""A recorded session served back by the local server to a live client behaves the same."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import engine
from engine.events import StateChanged, TurnMetrics
from engine.record import read, server_script
from engine.server import LocalServer

pytestmark = pytest.mark.anyio


async def _call(url: str, record: Path | None) -> list[tuple[str, str]]:
    session = engine.Session(engine.Inworld(api_key="sk-serve-test", url=url), record=record)
    states: list[tuple[str, str]] = []
    session.on(StateChanged)(lambda e: states.append((e.old.value, e.new.value)))
    async with session.connect():
        await session.send_text("Hello there")
        await session.wait_for(TurnMetrics, timeout=5)
        await session.send_text("And again")
        await session.wait_for(TurnMetrics, timeout=5)
    return states


async def test_recorded_session_served_to_a_live_client(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(15):
        async with LocalServer(pace=0).running() as server:
            recorded_states = await _call(server.url(), path)
        script = server_script(path)
        assert {"await": "session.update"} in script
        assert any(step.get("type") == "response.done" for step in script)

        replaying = LocalServer(pace=0)
        replaying.replay(script, index=0)
        async with replaying.running() as server:
            replayed_states = await _call(server.url(), None)
            sent = list(server.connections[0].sent_types)

    assert replayed_states == recorded_states
    recorded_server_types = [r["event"]["type"] for r in read(path) if r["kind"] == "server"]
    assert sent[: len(recorded_server_types)] == recorded_server_types
