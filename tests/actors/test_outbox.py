"""The outbox and its writer: order kept, backpressure, every wake-up path, bounded close."""

from __future__ import annotations

import anyio
import pytest

from engine.actors.outbox import Outbox, run_writer
from engine.errors import ConnectionClosed

pytestmark = pytest.mark.anyio


class _Socket:
    """A transport that records what is sent; ``gate`` (when given) holds each send until set."""

    def __init__(self, gate: anyio.Event | None = None, fail_after: int | None = None) -> None:
        self.sent: list[str] = []
        self.gate = gate
        self.fail_after = fail_after
        self._changed = anyio.Event()

    async def send(self, text: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionClosed("gone", 1006, "")
        self.sent.append(text)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, n: int) -> None:
        while len(self.sent) < n:
            await self._changed.wait()


async def test_writer_wakes_for_each_message_and_keeps_the_order() -> None:
    outbox, socket = Outbox(size=4), _Socket()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer, outbox, socket)
            for n in range(3):
                await outbox.send(f"m{n}")
                await socket.wait(n + 1)  # the writer was waiting: the message woke it
            outbox.close()  # the writer drains and returns: the group can exit
    assert socket.sent == ["m0", "m1", "m2"]
    assert outbox.sent == 3


async def test_a_full_queue_makes_producers_wait_in_order() -> None:
    gate = anyio.Event()
    outbox, socket = Outbox(size=2), _Socket(gate)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer, outbox, socket)
            await outbox.send("a")
            await anyio.wait_all_tasks_blocked()  # the writer holds "a" at the gate
            assert outbox.send_nowait("b") and outbox.send_nowait("c")
            assert not outbox.send_nowait("d")  # full: refused, not dropped silently

            async def produce(text: str) -> None:
                await outbox.send(text)

            tg.start_soon(produce, "d")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(produce, "e")
            await anyio.wait_all_tasks_blocked()
            assert not outbox.send_nowait("x")  # others wait for room: no overtaking
            gate.set()
            await socket.wait(5)
            outbox.close()
    assert socket.sent == ["a", "b", "c", "d", "e"]


async def test_messages_queued_before_close_are_still_sent() -> None:
    outbox, socket = Outbox(size=8), _Socket()
    for n in range(5):
        assert outbox.send_nowait(f"m{n}")
    outbox.close()
    with anyio.fail_after(5):
        await run_writer(outbox, socket)
    assert socket.sent == [f"m{n}" for n in range(5)]


async def test_close_all_ends_a_waiting_writer_and_drops_the_queue() -> None:
    outbox, socket = Outbox(size=8), _Socket()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer, outbox, socket)
            await anyio.wait_all_tasks_blocked()  # waiting for a message
            outbox.close_all()
    assert socket.sent == []
    with pytest.raises(anyio.ClosedResourceError):
        await outbox.send("late")


async def test_a_failed_socket_stops_the_writer() -> None:
    outbox, socket = Outbox(size=8), _Socket(fail_after=1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer, outbox, socket)
            await outbox.send("first")
            await outbox.send("second")  # the socket fails on this one
        # The group exited: the writer returned on ConnectionClosed instead of waiting forever.
    assert socket.sent == ["first"]
    outbox.close_all()
