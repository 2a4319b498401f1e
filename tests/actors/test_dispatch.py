"""Dispatcher bookkeeping: closed or abandoned streams are not fed forever; a blocking callback is demoted."""

from __future__ import annotations

import gc
import logging
import threading
import time
import warnings
from typing import Any

import anyio
import anyio.to_thread
import pytest

from engine.actors.dispatch import Dispatcher
from engine.events import AudioOut, Error, SpeechStarted

pytestmark = pytest.mark.anyio


async def test_a_closed_stream_is_forgotten_and_its_channel_released() -> None:
    dispatcher = Dispatcher(event_buffer=4)
    event = SpeechStarted(item_id="item_1", audio_start_ms=0)
    with warnings.catch_warnings(record=True) as caught, anyio.fail_after(5):
        warnings.simplefilter("always", ResourceWarning)
        kept = dispatcher.stream()
        for _ in range(50):
            async with dispatcher.stream():
                pass
        assert len(dispatcher._subscribers) == 1  # only the open stream is left
        dispatcher.publish(event)
        assert await kept.__anext__() is event
        dispatcher.close()
        assert [e async for e in kept] == []
        gc.collect()
    unclosed = [str(w.message) for w in caught if "Unclosed <MemoryObject" in str(w.message)]
    assert unclosed == []


# ---------------------------------------------------------------------- streams nobody closes


def _audio(response_id: str) -> AudioOut:
    return AudioOut(pcm=b"\x00\x00", sample_rate=24000, item_id="item_1", response_id=response_id)


async def test_a_stream_dropped_without_closing_is_released() -> None:
    dispatcher = Dispatcher(event_buffer=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        stream = dispatcher.stream()
        dispatcher.publish(_audio("resp_1"))
        assert dispatcher.subscriber_count() == 1
        del stream
        gc.collect()
        assert dispatcher.subscriber_count() == 0
        for _ in range(10):
            dispatcher.publish(_audio("resp_1"))  # nothing queued for it, nothing raised
        assert dispatcher.dropped == 0
        dispatcher.close()
        gc.collect()
    assert [str(w.message) for w in caught if "Unclosed <MemoryObject" in str(w.message)] == []


async def test_a_stream_collected_in_a_worker_thread_is_removed_on_the_loop() -> None:
    """A garbage collection may run the release in any thread (a demoted callback's)."""
    dispatcher = Dispatcher(event_buffer=4)
    with anyio.fail_after(5):
        stream: Any = dispatcher.stream()
        stream.cycle = stream  # only the cycle collector can free it
        del stream
        gc.disable()
        try:
            await anyio.to_thread.run_sync(gc.collect)
        finally:
            gc.enable()
        dispatcher.publish(_audio("resp_1"))
        assert dispatcher._subscribers == []


# ---------------------------------------------------------------------- sync callbacks that block


class _Slow:
    """A sync callback that sleeps past the threshold once, then blocks on ``release`` when told."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.block = threading.Event()  # set: the next calls wait for release
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.returned = threading.Event()
        self.seen = threading.Event()  # set when an event equal to ``last`` arrives
        self.last: Any = None

    def __call__(self, event: Any) -> None:
        self.got.append(event)
        if len(self.got) == 1:
            time.sleep(0.03)
        elif self.block.is_set() and not self.blocked.is_set():
            self.blocked.set()
            self.release.wait(2.0)
            self.returned.set()
        if event == self.last:
            self.seen.set()


async def _thread_wait(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, 2.0)


async def test_a_blocking_sync_callback_is_demoted_once_and_reported_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = Dispatcher(event_buffer=8, slow_callback_threshold=0.01)
    got: list[Any] = []

    def sluggish(event: Any) -> None:
        got.append(event)
        if len(got) == 1:
            time.sleep(0.03)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            dispatcher.add_callback(tg, (AudioOut,), sluggish)
            errors = dispatcher.stream((Error,))
            dispatcher.publish(_audio("resp_1"))
            dispatcher.publish(_audio("resp_2"))
            report = await errors.__anext__()
            assert report.code == "slow_callback" and report.source == "callback"
            assert sluggish.__qualname__ in report.message
            assert dispatcher.slow_callbacks == 1
            dispatcher.close()
            await dispatcher.drain()
    assert [e.response_id for e in got] == ["resp_1", "resp_2"]  # each once, in order
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and sluggish.__qualname__ in warned[0] and "0.0" in warned[0]


async def test_a_demoted_callback_skips_queued_audio_of_an_interrupted_response() -> None:
    dispatcher = Dispatcher(event_buffer=8, slow_callback_threshold=0.01)
    slow = _Slow()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            dispatcher.add_callback(tg, (AudioOut,), slow)
            dispatcher.publish(_audio("resp_0"))  # sleeps inline: demoted
            slow.block.set()
            dispatcher.publish(_audio("resp_1"))  # the thread blocks on this one
            await _thread_wait(slow.blocked)
            dispatcher.publish(_audio("resp_1"))  # queued behind it...
            dispatcher.publish(_audio("resp_1"))
            dispatcher.drop_response("resp_1")  # ...and dropped by the barge-in
            slow.last = _audio("resp_2")
            dispatcher.publish(_audio("resp_2"))
            slow.release.set()
            await _thread_wait(slow.seen)
            dispatcher.close()
            await dispatcher.drain()
    assert [e.response_id for e in slow.got] == ["resp_0", "resp_1", "resp_2"]


async def test_a_demoted_callback_overflows_like_any_subscriber() -> None:
    dispatcher = Dispatcher(event_buffer=2, slow_callback_threshold=0.01)
    slow = _Slow()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            dispatcher.add_callback(tg, None, slow)
            dispatcher.publish(_audio("resp_0"))  # demoted; the slow_callback Error is its first queued
            slow.block.set()
            await _thread_wait(slow.blocked)  # blocked on that Error
            for n in range(1, 6):
                dispatcher.publish(_audio(f"resp_{n}"))  # two fit, three are dropped
            slow.last = _audio("resp_2")
            slow.release.set()
            await _thread_wait(slow.seen)  # its queue is empty again
            slow.seen.clear()
            slow.last = _audio("resp_6")
            dispatcher.publish(_audio("resp_6"))
            await _thread_wait(slow.seen)
            dispatcher.close()
            await dispatcher.drain()
    assert dispatcher.dropped == 3
    kinds = [e.code if isinstance(e, Error) else e.response_id for e in slow.got]
    assert kinds == ["resp_0", "slow_callback", "resp_1", "resp_2", "events_dropped", "resp_6"]


async def test_close_wakes_waiters_and_does_not_wait_for_a_callback_blocked_in_its_thread() -> None:
    """drain() cannot finish while the thread blocks; cancelling its task abandons the thread."""
    dispatcher = Dispatcher(event_buffer=8, slow_callback_threshold=0.01)
    slow = _Slow()
    woken: list[str] = []

    async def waiter() -> None:
        with pytest.raises(EOFError):
            await dispatcher.wait_for(SpeechStarted, None)
        woken.append("waiter")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            dispatcher.add_callback(tg, None, slow)
            tg.start_soon(waiter)
            stream = dispatcher.stream()
            dispatcher.publish(_audio("resp_0"))
            slow.block.set()
            await _thread_wait(slow.blocked)
            await anyio.wait_all_tasks_blocked()
            dispatcher.close()
            assert [e async for e in stream]  # the stream ends after what it had queued
            with anyio.move_on_after(0.1) as bounded:
                await dispatcher.drain()
            assert bounded.cancelled_caught  # the blocked thread holds the drain...
            tg.cancel_scope.cancel()  # ...and the session's close cancels its task after close_timeout
        assert not slow.returned.is_set()  # the task group ended while the thread still blocks
        slow.release.set()
        await _thread_wait(slow.returned)  # the thread finishes on its own
    assert woken == ["waiter"]


async def test_a_demoted_callback_that_raises_is_still_reported() -> None:
    """Slow and failing in the same call, then failing in its thread: each failure is an Error."""
    dispatcher = Dispatcher(event_buffer=8, slow_callback_threshold=0.01)
    calls: list[str] = []

    def broken(event: AudioOut) -> None:
        calls.append(event.response_id or "")
        if len(calls) == 1:
            time.sleep(0.03)
        raise RuntimeError(f"bad {event.response_id}")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            dispatcher.add_callback(tg, (AudioOut,), broken)
            errors = dispatcher.stream((Error,))
            dispatcher.publish(_audio("resp_1"))
            dispatcher.publish(_audio("resp_2"))
            reports = [await errors.__anext__() for _ in range(3)]
            dispatcher.close()
            await dispatcher.drain()
    assert [e.code for e in reports] == ["callback_failed", "slow_callback", "callback_failed"]
    assert "bad resp_1" in reports[0].message and "bad resp_2" in reports[2].message
    assert broken.__qualname__ in reports[1].message
    assert calls == ["resp_1", "resp_2"]
