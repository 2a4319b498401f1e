"""Consumers that leak or block: event streams left without closing, sync callbacks that block the loop.

A real peer (:class:`tests.actors.peer.Peer`) on 127.0.0.1 answers every
``send_text`` with a short audio response; every test runs under asyncio and
trio. Abandoned streams are counted with ``statistics().event_subscribers``
(after ``gc.collect()``, so a reference cycle cannot hide a leak) and weighed
with tracemalloc. A blocking callback is judged by the order of events, never
by a timed assertion: it blocks on a ``threading.Event`` that the test sets
only after the other consumers have shown they were not held up.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import tracemalloc
from typing import Any

import anyio
import pytest
import sniffio

import engine
from engine.core.commands import AudioPlayed
from engine.events import Error, ResponseDone
from tests.actors.helpers import collect_until, make_session, next_event
from tests.actors.peer import Peer, running_peer

pytestmark = pytest.mark.anyio

SETTINGS = engine.SessionSettings(close_timeout=0.5, ready_timeout=3.0, slow_callback_threshold=0.05)


def subscribers(session: engine.Session) -> int:
    """Subscribers the session still feeds, once unreachable streams are collected."""
    gc.collect()
    return session.statistics().event_subscribers


class _Leave(Exception):
    """Raised by a consumer to leave its loop."""


async def _first_done(session: engine.Session) -> ResponseDone:
    async for event in session.events():
        if isinstance(event, ResponseDone):
            return event  # leaves the loop without closing the stream
    raise AssertionError("the stream ended before ResponseDone")


async def turn_then_leave(session: engine.Session, how: str) -> None:
    """One text turn, consumed by an ``events()`` loop that is left ``how`` (never closed)."""
    async with anyio.create_task_group() as tg:
        # Starts at the loop's first wait: the stream subscribes before the request goes out.
        tg.start_soon(session.send_text, "hi")
        if how == "break":
            async for event in session.events():
                if isinstance(event, ResponseDone):
                    break
        elif how == "return":
            await _first_done(session)
        elif how == "raise":
            with contextlib.suppress(_Leave):
                async for event in session.events():
                    if isinstance(event, ResponseDone):
                        raise _Leave
        elif how == "cancel":  # cancelled inside a pending __anext__ (its frame is in the traceback)
            with anyio.CancelScope() as scope:
                async for event in session.events():
                    if isinstance(event, ResponseDone):
                        scope.cancel()
        elif how == "named":
            stream = session.events()
            async for event in stream:
                if isinstance(event, ResponseDone):
                    break
            del stream
        else:
            raise AssertionError(how)


# ---------------------------------------------------------------------- abandoned event streams


@pytest.mark.parametrize("how", ["break", "return", "raise", "cancel", "named"])
async def test_a_stream_left_without_closing_stops_being_fed(how: str) -> None:
    with anyio.fail_after(10):
        async with running_peer() as peer:
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                base = subscribers(session)
                for _ in range(4):
                    await turn_then_leave(session, how)
                    assert subscribers(session) == base
                # The session goes on for the consumers that stayed.
                async with session.events() as stream:
                    await session.send_text("again")
                    await next_event(stream, ResponseDone)
                    assert subscribers(session) == base + 1
                assert subscribers(session) == base


async def test_break_releases_the_stream_without_a_collection() -> None:
    """The common ``async for ... break``: reference counting alone frees it, no cycle is left."""
    with anyio.fail_after(10):
        async with running_peer() as peer:
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                base = session.statistics().event_subscribers
                gc.disable()
                try:
                    for _ in range(3):
                        await turn_then_leave(session, "break")
                        assert session.statistics().event_subscribers == base
                finally:
                    gc.enable()


async def test_abandoned_streams_hold_no_memory() -> None:
    """Many turns, each consumed by a loop left with ``break``: memory stays flat."""
    with anyio.fail_after(20):
        async with running_peer() as peer:
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                for _ in range(5):  # warm up: caches, the history mirror's first items
                    await turn_then_leave(session, "break")
                tracemalloc.start()
                try:
                    gc.collect()
                    before = tracemalloc.get_traced_memory()[0]
                    for _ in range(20):
                        await turn_then_leave(session, "break")
                        peer.received.clear()  # the peer's own record of the wire is not the session's
                    gc.collect()
                    grown = tracemalloc.get_traced_memory()[0] - before
                finally:
                    tracemalloc.stop()
    # 20 turns of history are about 40 KB; 20 streams fed every later turn held about 360 KB.
    assert grown < 96 * 1024, f"{grown} bytes more held after 20 abandoned streams"


# ---------------------------------------------------------------------- sync callbacks that block


class Blocker:
    """A sync callback that blocks when the test says so: once by sleeping, then on an event.

    ``sleep_next`` makes the next call sleep past the threshold (the demotion);
    ``block_next`` makes the next call wait for ``release`` (set by the test
    only once the others have been seen to go on), and ``blocked`` says it is
    waiting. ``returned`` is set when that blocked call returns; ``arrived``
    when the call for ``wanted`` has begun.
    """

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.sleep_next = False
        self.block_next = False
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.order: list[str] = []
        self.wanted: Any = None
        self.arrived = threading.Event()

    def __call__(self, event: Any) -> None:
        self.got.append(event)
        if event is self.wanted:
            self.arrived.set()
        if self.sleep_next:
            self.sleep_next = False
            time.sleep(0.15)
        elif self.block_next:
            self.block_next = False
            self.blocked.set()
            # Bounded, so that without the fix (called inline, the loop stalled) the test fails, not hangs.
            self.release.wait(2.0)
            self.order.append("callback returned")
            self.returned.set()


async def ping(peer: Peer) -> None:
    """A WebSocket ping from the peer; returns when the client's pong arrives."""
    ws: Any = peer.transport._ws  # type: ignore[union-attr]
    if sniffio.current_async_library() == "trio":
        await ws.ping()
    else:
        await (await ws.ping())


async def wait_thread(event: threading.Event) -> None:
    """Wait, off the loop, for a ``threading.Event`` (2 s at most)."""
    assert await anyio.to_thread.run_sync(event.wait, 2.0)


async def test_a_blocking_sync_callback_is_reported_and_moved_off_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.actors.dispatch")
    blocker = Blocker()
    name = "Blocker.__call__"
    with anyio.fail_after(10):
        async with running_peer() as peer:
            session = make_session(peer, settings=SETTINGS)
            session.on()(blocker)
            async with session.connect():
                # Turn 1: one call sleeps 0.15 s inline (threshold 0.05 s).
                async with session.events() as stream:
                    blocker.sleep_next = True
                    await session.send_text("one")
                    seen = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                slow = [e for e in seen if isinstance(e, Error) and e.code == "slow_callback"]
                assert len(slow) == 1 and slow[0].source == "callback"
                assert name in slow[0].message
                assert session.statistics().slow_callbacks == 1
                # Turn 2: the callback blocks in its next call; the others must not wait for it.
                async with session.events() as stream:
                    blocker.block_next = True
                    await session.send_text("two")
                    await wait_thread(blocker.blocked)
                    await ping(peer)  # keep-alives are answered while it blocks
                    blocker.order.append("pong")
                    streamed = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                    blocker.order.append("stream got ResponseDone")
                blocker.release.set()
                await wait_thread(blocker.returned)
                blocker.wanted = streamed[-1]
                if not any(e is streamed[-1] for e in blocker.got):
                    await wait_thread(blocker.arrived)  # the thread catches up
    assert blocker.order == ["pong", "stream got ResponseDone", "callback returned"]
    # The demoted callback still gets every event, once, in order.
    ids = {id(e) for e in streamed}
    assert [e for e in blocker.got if id(e) in ids] == streamed
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and name in r.getMessage()]
    assert len(warned) == 1 and "s" in warned[0].getMessage()


async def test_closing_with_a_demoted_callback_blocked_in_a_thread_is_bounded() -> None:
    """close() wakes every waiter and returns within close_timeout; the thread ends later on its own."""
    blocker = Blocker()
    settings = engine.SessionSettings(close_timeout=0.3, ready_timeout=3.0, slow_callback_threshold=0.05)
    outcomes: list[str] = []

    async def waiter(session: engine.Session) -> None:
        with contextlib.suppress(engine.SessionClosed):
            await session.wait_for(engine.events.Reconnected)  # never comes
        outcomes.append("waiter woken")

    async def consumer(stream: Any) -> None:
        async for _ in stream:
            pass
        outcomes.append("stream ended")

    with anyio.fail_after(10):
        async with running_peer() as peer, anyio.create_task_group() as tg:
            session = make_session(peer, settings=settings)
            session.on()(blocker)
            async with session.connect():
                async with session.events() as stream:
                    blocker.sleep_next = True
                    await session.send_text("one")
                    await next_event(stream, ResponseDone)
                assert session.statistics().slow_callbacks == 1
                tg.start_soon(waiter, session)
                tg.start_soon(consumer, session.events())
                blocker.block_next = True
                await session.send_text("two")
                await wait_thread(blocker.blocked)
            outcomes.append("closed")
            returned_before_close = blocker.returned.is_set()
            blocker.release.set()
            await wait_thread(blocker.returned)
    assert not returned_before_close
    assert sorted(outcomes) == ["closed", "stream ended", "waiter woken"]
    assert session.state is engine.State.CLOSED


async def test_a_demoted_callback_may_still_acknowledge_playback() -> None:
    """The playback contract (``audio_played`` from the audio callback) holds after the move to a thread."""
    loop_thread = threading.get_ident()
    core_calls: list[int] = []
    played: dict[str, float] = {}
    first = True
    expected = 0
    all_acknowledged = anyio.Event()

    def speaker(event: engine.events.AudioOut) -> None:
        nonlocal first
        if first:
            first = False
            time.sleep(0.15)  # a blocking audio device write
        assert event.item_id is not None
        played[event.item_id] = played.get(event.item_id, 0.0) + event.duration_ms
        session.audio_played(event.item_id, played[event.item_id])
        session.pause_audio_input(False)

    with anyio.fail_after(10):
        async with running_peer() as peer:
            session = make_session(peer, settings=SETTINGS)
            session.on(engine.events.AudioOut)(speaker)
            async with session.connect():
                conv: Any = session._conv

                def on_core(received: Any, effects: Any) -> None:  # the core's observer: every input
                    if isinstance(received, AudioPlayed):
                        core_calls.append(threading.get_ident())
                        if expected and len(core_calls) >= expected:
                            all_acknowledged.set()

                conv.observer = on_core
                async with session.events() as stream:
                    await session.send_text("one")
                    seen = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                    await session.send_text("two")
                    seen += await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                expected = len([e for e in seen if isinstance(e, engine.events.AudioOut)])
                if len(core_calls) < expected:
                    await all_acknowledged.wait()  # the thread acknowledges the last chunks
    assert session.statistics().slow_callbacks == 1
    assert [e.code for e in seen if isinstance(e, Error)] == ["slow_callback"]  # no callback_failed
    assert set(core_calls) == {loop_thread}  # every acknowledgement ran on the event loop
