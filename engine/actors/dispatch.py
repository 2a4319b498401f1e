"""The event dispatcher: user events to callbacks, streams and waiters, in order.

Two kinds of delivery, both in order for each consumer:

* **sync callbacks** are called at once, in the task that produced the event
  (no queue, no task switch: a sync function cannot wait, so a queue would buy
  nothing; it must only be quick, e.g. hand the audio to a player's buffer);
* **async callbacks and ``session.events()`` streams** are *subscribers* with
  their own bounded queue and, for callbacks, their own task. So an async
  callback that awaits something slow delays only itself: the socket reader,
  the audio path and the other callbacks go on.

A callback that raises is logged and reported as an ``Error`` (source
``callback``); it is never allowed to stop the dispatcher.

Overflow policy: publishing never waits. When a subscriber's queue is full the
new event is dropped for that subscriber, counted, and an ``Error`` with code
``events_dropped`` is delivered to it as soon as it has room again. Size the
queue (``event_buffer``) for the slowest consumer you accept.

Barge-in: ``drop_response(id)`` makes every subscriber skip the ``AudioOut``
events of that response still in its queue, which is how queued audio of an
interrupted response is discarded without touching the queues themselves.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from engine.actors.group import Starter
from engine.core import events as ev

log = logging.getLogger(__name__)

Callback = Callable[[Any], Any]


class _Subscriber:
    def __init__(self, types: tuple[type, ...] | None, size: int) -> None:
        self.types = types
        self.send, self.receive = anyio.create_memory_object_stream[Any](size)
        self.dropped = 0

    def wants(self, event: object) -> bool:
        return self.types is None or isinstance(event, self.types)


class Dispatcher:
    """Fans user events out to subscribers. Owned by one session."""

    def __init__(self, *, event_buffer: int = 1000) -> None:
        self._size = event_buffer
        self._subscribers: list[_Subscriber] = []
        self._inline: list[tuple[tuple[type, ...] | None, Callback]] = []
        self._streams: list[EventStream] = []
        self._waiters: list[tuple[type, anyio.Event, list[Any]]] = []
        self._dropped_responses: deque[str | None] = deque(maxlen=64)
        self._closed = False
        self._active = 0
        self._idle = anyio.Event()
        self._idle.set()
        self.delivered = 0
        self.dropped = 0

    # -------------------------------------------------------------- subscribing

    def add_callback(self, tg: Starter, types: tuple[type, ...] | None, callback: Callback) -> None:
        """Call ``callback`` for each matching event: inline if sync, in its own task if async."""
        if not _is_async(callback):
            self._inline.append((types, callback))
            return
        sub = self._add(types)
        tg.start_soon(self._run_callback, sub, callback, name=f"callback {_name(callback)}")

    def stream(self, types: tuple[type, ...] | None = None) -> EventStream:
        """An async iterator of matching events; it ends when the session closes."""
        sub = self._add(types)
        stream = EventStream(sub.receive, self)
        self._streams.append(stream)
        if self._closed:
            sub.send.close()
            stream.detach()
        return stream

    def forget(self, stream: EventStream) -> None:
        """Its consumer closed ``stream``: stop queueing events for it."""
        with contextlib.suppress(ValueError):
            self._streams.remove(stream)
        for sub in self._subscribers:
            if sub.receive is stream._receive:
                self._subscribers.remove(sub)
                sub.send.close()
                return

    def _add(self, types: tuple[type, ...] | None) -> _Subscriber:
        sub = _Subscriber(types, self._size)
        self._subscribers.append(sub)
        return sub

    async def wait_for(self, kind: type, timeout: float | None) -> Any:  # noqa: ASYNC109
        """The next event of ``kind``. Raises ``TimeoutError``, or ``EOFError`` once closed."""
        if self._closed:
            raise EOFError("the session is closed")
        slot: list[Any] = []
        done = anyio.Event()
        waiter = (kind, done, slot)
        self._waiters.append(waiter)
        try:
            with anyio.fail_after(timeout):
                await done.wait()
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if not slot:
            raise EOFError("the session closed while waiting")
        return slot[0]

    # -------------------------------------------------------------- publishing

    def publish(self, event: Any) -> None:
        """Hand ``event`` to every interested subscriber without waiting."""
        if self._waiters:
            for kind, done, slot in list(self._waiters):
                if isinstance(event, kind) and not done.is_set():
                    slot.append(event)
                    done.set()
        for types, callback in self._inline:
            if types is None or isinstance(event, types):
                # _call, inlined: this runs for every audio chunk.
                try:
                    result = callback(event)
                except Exception as exc:
                    self._failed(callback, event, exc)
                    continue
                if result is None:
                    self.delivered += 1
                else:
                    self._returned(callback, event, result)
        for sub in self._subscribers:
            if not sub.wants(event):
                continue
            try:
                if sub.dropped:
                    if sub.wants(_OVERFLOW_PROBE):  # only consumers of Error hear about it
                        sub.send.send_nowait(_overflow(sub.dropped))
                    sub.dropped = 0
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                sub.dropped += 1
                self.dropped += 1
                if sub.dropped == 1:
                    log.warning("a subscriber is too slow; dropping %s", type(event).__name__)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the consumer went away; its loss

    def _returned(self, callback: Callback, event: Any, result: Any) -> None:
        """A sync callback returned something: fine, unless it is an awaitable nobody will await."""
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            self._failed(callback, event, TypeError("it returned an awaitable: declare it with 'async def'"))
            return
        self.delivered += 1

    def _failed(self, callback: Callback, event: Any, exc: Exception) -> None:
        log.exception("callback %s failed on %s", _name(callback), type(event).__name__)
        if not isinstance(event, ev.Error):  # an Error about a failing Error callback would loop
            self.publish(
                ev.Error(
                    code="callback_failed",
                    message=f"{_name(callback)} raised {type(exc).__name__}: {exc}",
                    source="callback",
                )
            )

    def drop_response(self, response_id: str | None) -> None:
        """Skip queued ``AudioOut`` of this response everywhere (barge-in)."""
        self._dropped_responses.append(response_id)

    def is_dropped(self, event: object) -> bool:
        """True for audio of a response that was interrupted."""
        return isinstance(event, ev.AudioOut) and event.response_id in self._dropped_responses

    def close(self) -> None:
        """End every stream and wake every waiter."""
        self._closed = True
        for sub in self._subscribers:
            sub.send.close()
        for stream in self._streams:
            stream.detach()
        for _, done, _ in self._waiters:
            done.set()

    async def drain(self) -> None:
        """Wait until every callback task has delivered its queue (after ``close``)."""
        await self._idle.wait()

    # -------------------------------------------------------------- delivery

    async def _run_callback(self, sub: _Subscriber, callback: Callback) -> None:
        if self._active == 0:
            self._idle = anyio.Event()  # a drain() waiting on the current one must still be woken
        self._active += 1
        try:
            await self._deliver(sub, callback)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _deliver(self, sub: _Subscriber, callback: Callback) -> None:
        async with sub.receive:
            async for first in sub.receive:
                # One wake-up delivers the whole backlog: no task switch per event in a burst.
                batch = [first]
                with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while len(batch) < 64:
                        batch.append(sub.receive.receive_nowait())
                for event in batch:
                    if self.is_dropped(event):
                        continue
                    try:
                        await callback(event)
                        self.delivered += 1
                    except Exception as exc:
                        self._failed(callback, event, exc)


class EventStream:
    """What ``session.events()`` returns: ``async for event in stream``; ends at close."""

    def __init__(self, receive: MemoryObjectReceiveStream[Any], dispatcher: Dispatcher) -> None:
        self._receive = receive
        self._dispatcher = dispatcher
        self._rest: deque[Any] | None = None  # what was queued when the session closed

    def detach(self) -> None:
        """The session closed: keep what is queued, release the channel."""
        rest: deque[Any] = deque()
        while True:
            try:
                rest.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()
        self._rest = rest

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._rest is not None:
                if not self._rest:
                    raise StopAsyncIteration
                event = self._rest.popleft()
            else:
                try:
                    event = await self._receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    if self._rest is None:
                        raise StopAsyncIteration from None
                    continue  # detached while we waited: serve what it kept
            if not self._dispatcher.is_dropped(event):
                return event

    async def aclose(self) -> None:
        """Stop receiving (events for this stream are then discarded)."""
        self._rest = deque()
        self._dispatcher.forget(self)
        await self._receive.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_OVERFLOW_PROBE = ev.Error(code="events_dropped", message="", source="local")


def _overflow(count: int) -> ev.Error:
    return ev.Error(
        code="events_dropped",
        message=f"{count} events were dropped because this consumer was too slow",
        source="local",
    )


def _is_async(callback: Callback) -> bool:
    target: Any = callback
    while isinstance(target, functools.partial):
        target = target.func
    method = type(target).__dict__.get("__call__")  # an object with an async __call__
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(method)


def _name(callback: Callback) -> str:
    return getattr(callback, "__qualname__", repr(callback))
