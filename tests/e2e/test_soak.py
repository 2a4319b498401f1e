"""Issue 5: a long session does not leak. 200 text turns on one session, memory measured per turn.

The local server runs in its own process (``python -m engine.server``, which
is ``LocalServer.run`` on 127.0.0.1, ``pace=0``) so that ``tracemalloc`` sees
the client alone: in-process, the server's own conversation would grow beside
ours and tracing both makes the test several times slower.

Tracing starts after turn 50 (warm-up: caches, interned strings, the first
resizes) and the allocations still alive after turn 200 are the growth of
150 turns. Measured (both backends, Python 3.11): about 1.8 KB per turn, all
of it the mirrored conversation that ``session.history`` must keep (and a
restore replays): per turn two items (the user's text, the assistant's answer
with its transcript) as ``Item``/``ContentPart`` objects, the decoded JSON
strings they hold (ids, roles, texts), and the occasional resize of the
history dict and of the core's set of announced item ids. (Under trio, with
deeper tracing, a few hundred bytes more can show up: trio keeps cancelled
deadlines in its timer heap until it prunes them, which is bounded.) Nothing
per audio chunk or per event may stay: one turn carries about 50 KB of audio
and some 50 events, so a leak of either would be far above the bound.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import sniffio

import engine
from engine import events as ev
from engine.actors.dispatch import EventStream
from engine.server.app import PATH
from tests.e2e.helpers import SETTINGS, collect_until, play_all

pytestmark = pytest.mark.anyio

ROOT = Path(engine.__file__).resolve().parent.parent
TURNS = 200
WARM_UP = 50
BOUND_PER_TURN = 3 * 1024
"""Bytes a turn may add for good: the ~2 KB of mirrored history measured, plus margin."""


async def _drain(stream: anyio.abc.ByteReceiveStream) -> None:
    async for _ in stream:
        pass


@asynccontextmanager
async def server_process() -> AsyncIterator[int]:
    """``python -m engine.server`` on a free 127.0.0.1 port (``pace=0``, no pings); yields the port."""
    command = [
        sys.executable, "-m", "engine.server", "--host", "127.0.0.1", "--port", "0", "--pace", "0",
        "--ping-interval", "0", "--backend", sniffio.current_async_library(),
    ]  # fmt: skip
    process = await anyio.open_process(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        seen = b""
        async for chunk in process.stderr:
            seen += chunk
            found = re.search(rb"ws://127\.0\.0\.1:(\d+)", seen)
            if found:
                break
        else:
            raise AssertionError(f"the server did not start: {seen.decode(errors='replace')}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, process.stderr)  # keep its log from filling the pipe
            yield int(found.group(1))
            process.terminate()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
            await process.wait()
            await process.aclose()


async def _turn(session: engine.Session, stream: EventStream, number: int) -> None:
    await session.send_text(f"Turn {number}.")
    events = await collect_until(stream, lambda e: isinstance(e, ev.TurnMetrics))
    play_all(session, events)
    answers = [e.text for e in events if isinstance(e, ev.AssistantTranscript) and e.final]
    assert answers == [f"You said: Turn {number}."]


async def test_two_hundred_turns_do_not_leak() -> None:
    growth = 0
    with anyio.fail_after(60):
        async with server_process() as port:
            provider = engine.Inworld(api_key="soak-key", url=f"ws://127.0.0.1:{port}{PATH}")
            session = engine.Session(provider, engine.SessionConfig(instructions="echo"), settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                try:
                    for number in range(1, TURNS + 1):
                        await _turn(session, stream, number)
                        if number == WARM_UP:
                            gc.collect()
                            tracemalloc.start()
                    gc.collect()
                    growth = tracemalloc.get_traced_memory()[0]
                finally:
                    tracemalloc.stop()
                stats = session.statistics()
                history = len(session.history)

    per_turn = growth / (TURNS - WARM_UP)
    assert per_turn < BOUND_PER_TURN, f"{per_turn:.0f} bytes per turn"
    assert history == 2 * TURNS  # what legitimately grows: the user's text and the answer
    assert stats.outbox_queued == 0
    assert stats.events_dropped == 0
    assert stats.tools_running == 0
