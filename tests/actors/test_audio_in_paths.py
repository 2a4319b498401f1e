"""AudioIn's two paths to the outbox (the caller's task, or the actor) keep the chunks in order.

Driven directly, without a session: a tiny outbox that nobody drains forces
the fall-back to the actor, and the test then drains it and reads the order.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import TaskGroup

from engine.actors.audio_in import AudioIn
from engine.actors.outbox import Outbox
from engine.protocol.config import AudioFormat

pytestmark = pytest.mark.anyio
FMT = AudioFormat()
CHUNK = FMT.bytes_per_second * 60 // 1000


def _chunk(n: int) -> bytes:
    return bytes([n]) * CHUNK


def _numbers(texts: list[str]) -> list[int]:
    return [base64.b64decode(json.loads(t)["audio"])[0] for t in texts]


async def _drain(outbox: Outbox, n: int) -> list[str]:
    return [await outbox.receive.receive() for _ in range(n)]


@asynccontextmanager
async def running(size: int, *, gate_open: bool = True) -> AsyncIterator[tuple[AudioIn, Outbox, TaskGroup]]:
    """An AudioIn over a fresh outbox of ``size`` that nobody drains, its actor in a task group."""
    outbox = Outbox(size=size)
    audio = AudioIn(FMT, outbox, report_drop=lambda n: None)
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                audio.start_in(tg)
                if gate_open:
                    await audio.set_gate(True)
                yield audio, outbox, tg
                audio.close()
    finally:
        outbox.close_all()


async def test_direct_path_queues_in_the_callers_task() -> None:
    async with running(8) as (audio, outbox, _):
        for n in range(3):
            await audio.put(_chunk(n))
        # Queued already, on return from put: no task switch was needed.
        assert outbox.statistics() == 3
        assert audio.chunks_sent == 3
        got = await _drain(outbox, 3)
    assert _numbers(got) == [0, 1, 2]


async def test_a_full_outbox_falls_back_to_the_actor_in_order() -> None:
    async with running(1) as (audio, outbox, _):
        await audio.put(_chunk(0))  # direct: the outbox had room
        await audio.put(_chunk(1))  # full: the actor takes it (it has not run yet)
        got = [outbox.receive.receive_nowait()]  # room again, with chunk 1 still in hand
        await audio.put(_chunk(2))  # must queue behind chunk 1, not overtake it
        got += await _drain(outbox, 2)
        # Room again and nothing in hand: the next chunk goes direct.
        await audio.put(_chunk(3))
        assert outbox.statistics() == 1
        got += await _drain(outbox, 1)
    assert _numbers(got) == [0, 1, 2, 3]
    assert audio.chunks_sent == 4


async def test_flush_waits_for_chunks_taken_by_either_path() -> None:
    async with running(1) as (audio, outbox, tg):
        await audio.put(_chunk(0) + _chunk(1)[: CHUNK // 2])  # one whole chunk and a tail
        flushed = anyio.Event()

        async def flush() -> None:
            await audio.flush()
            flushed.set()

        tg.start_soon(flush)
        got = await _drain(outbox, 2)  # the tail can only go once the first chunk left
        await flushed.wait()
    assert _numbers(got) == [0, 1]
    assert len(base64.b64decode(json.loads(got[1])["audio"])) == CHUNK // 2


async def test_closed_gate_holds_instead_of_sending_direct() -> None:
    async with running(8, gate_open=False) as (audio, outbox, _):
        await audio.put(_chunk(0))  # the gate is closed (not ready yet): held by the actor
        await audio.flush()
        assert outbox.statistics() == 0
        await audio.set_gate(True)
        await audio.put(_chunk(1))
        got = await _drain(outbox, 2)
    assert _numbers(got) == [0, 1]


async def test_close_wakes_a_flush_the_actor_will_never_reach() -> None:
    flushed = anyio.Event()
    async with running(1) as (audio, _, tg):
        await audio.put(_chunk(0) + _chunk(1) + _chunk(2))  # the actor blocks on the full outbox

        async def flush() -> None:
            await audio.flush()
            flushed.set()

        tg.start_soon(flush)
        await anyio.wait_all_tasks_blocked()
        assert not flushed.is_set()
        audio.close()
        await flushed.wait()  # woken by close, though the actor never got to the marker
        tg.cancel_scope.cancel()  # as the session's shutdown then cancels its actors
    assert flushed.is_set()
