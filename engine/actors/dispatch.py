"""The event dispatcher: user events to callbacks, streams and waiters, in order.

Two kinds of delivery, both in order for each consumer:

* **sync callbacks** are called at once, in the task that produced the event
  (no queue, no task switch: a sync function cannot wait, so a queue would buy
  nothing; it must only be quick, e.g. hand the audio to a player's buffer);
* **async callbacks and ``session.events()`` streams** are *subscribers* with
  their own bounded queue and, for callbacks, their own task. So an async
  callback that awaits something slow delays only itself: the socket reader,
  the audio path and the other callbacks go on.

A sync callback that blocks anyway (one call longer than
``slow_callback_threshold``) is *demoted*: it is logged (WARNING, with its name
and how long it took), reported as an ``Error`` (source ``callback``, code
``slow_callback``), and from then on it is a subscriber whose task calls it in
a worker thread, one event at a time and in order. So it can no longer stall
the socket reader, keep-alives or the other consumers. The session's sync
methods it may call (``audio_played``, ``pause_audio_input``) check
:func:`in_callback_thread` and run on the event loop; anything else it shares
with loop code must be thread-safe.

A callback that raises is logged and reported as an ``Error`` (source
``callback``); it is never allowed to stop the dispatcher.

Overflow policy: publishing never waits. When a subscriber's queue is full the
new event is dropped for that subscriber, counted, and an ``Error`` with code
``events_dropped`` is delivered to it as soon as it has room again. Size the
queue (``event_buffer``) for the slowest consumer you accept.

Barge-in: ``drop_response(id)`` makes every subscriber skip the ``AudioOut``
events of that response still in its queue, which is how queued audio of an
interrupted response is discarded without touching the queues themselves.

Streams are not kept alive by the dispatcher: one its consumer stops
referencing (a ``break`` out of ``async for`` without ``aclose()``) is
collected, and its subscriber is removed at the next publish, so it is not fed
for the rest of the session.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.actors.group import Starter
from engine.core import events as ev
from engine.errors import ErrorCode, ErrorSource

log = logging.getLogger(__name__)

Callback = Callable[[Any], Any]
Types = tuple[type, ...] | None

_local = threading.local()


def in_callback_thread() -> bool:
    """True in a worker thread while it runs a demoted callback (session calls must hop to the loop)."""
    return getattr(_local, "demoted", False)


def _call_in_thread(callback: Callback, event: Any) -> Any:
    _local.demoted = True
    try:
        return callback(event)
    finally:
        _local.demoted = False


class _Subscriber:
    __slots__ = ("dropped", "send", "types")

    def __init__(self, types: Types, send: MemoryObjectSendStream[Any]) -> None:
        self.types = types
        self.send = send
        self.dropped = 0

    def wants(self, event: object) -> bool:
        return self.types is None or isinstance(event, self.types)


class Dispatcher:
    """Fans user events out to subscribers. Owned by one session."""

    def __init__(self, *, event_buffer: int = 1000, slow_callback_threshold: float = 0.1) -> None:
        self._size = event_buffer
        self._threshold = slow_callback_threshold
        # Both lists are replaced, never changed in place: a publish that adds or
        # removes a consumer (a demotion, a failure report) goes on over the old one.
        self._subscribers: list[_Subscriber] = []
        self._inline: list[tuple[Types, Callback, Starter]] = []
        # Subscribers of streams that were closed or collected; a collection may run a
        # finalizer in any thread (a demoted callback's too), so it only appends here.
        self._abandoned: list[_Subscriber] = []
        self._waiters: list[tuple[type, anyio.Event, list[Any]]] = []
        self._dropped_responses: deque[str | None] = deque(maxlen=64)
        self._closed = False
        self._active = 0
        self._idle = anyio.Event()
        self._idle.set()
        self.delivered = 0
        self.dropped = 0
        self.slow_callbacks = 0

    # -------------------------------------------------------------- subscribing

    def add_callback(self, tg: Starter, types: Types, callback: Callback) -> None:
        """Call ``callback`` for each matching event: inline if sync, in its own task if async."""
        if not _is_async(callback):
            self._inline = [*self._inline, (types, callback, tg)]
            return
        receive = self._add(types)
        tg.start_soon(self._run_callback, receive, callback, False, name=f"callback {_name(callback)}")

    def stream(self, types: Types = None) -> EventStream:
        """An async iterator of matching events; it ends when the session closes."""
        send, receive = anyio.create_memory_object_stream[Any](self._size)
        sub = _Subscriber(types, send)
        if self._closed:
            send.close()
        else:
            self._subscribers = [*self._subscribers, sub]
        return EventStream(receive, self, sub)

    def subscriber_count(self) -> int:
        """Callbacks with a queue and streams still fed (closed or collected streams excluded)."""
        self._remove_abandoned()
        return len(self._subscribers)

    def _add(self, types: Types) -> MemoryObjectReceiveStream[Any]:
        send, receive = anyio.create_memory_object_stream[Any](self._size)
        self._subscribers = [*self._subscribers, _Subscriber(types, send)]
        return receive

    def _abandon(self, sub: _Subscriber, receive: MemoryObjectReceiveStream[Any]) -> None:
        """A stream was closed or collected (any thread): stop feeding it from the next publish."""
        receive.close()  # from now on a send to it fails at once, and nothing warns it was left open
        if not self._closed:
            self._abandoned.append(sub)

    def _remove_abandoned(self) -> None:
        while self._abandoned:
            sub = self._abandoned.pop()
            sub.send.close()
            self._subscribers = [s for s in self._subscribers if s is not sub]

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
        if self._abandoned:
            self._remove_abandoned()
        subscribers = self._subscribers  # a callback demoted below already had this event
        if self._waiters:
            for kind, done, slot in list(self._waiters):
                if isinstance(event, kind) and not done.is_set():
                    slot.append(event)
                    done.set()
        for entry in self._inline:
            types, callback, _ = entry
            if types is None or isinstance(event, types):
                # _call, inlined: this runs for every audio chunk.
                started = perf_counter()
                try:
                    result = callback(event)
                except Exception as exc:
                    took = perf_counter() - started
                    self._failed(callback, event, exc)
                else:
                    took = perf_counter() - started
                    if result is None:
                        self.delivered += 1
                    else:
                        self._returned(callback, event, result)
                if took > self._threshold:
                    self._demote(entry, took)
        for sub in subscribers:
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
        log.error("callback %s failed on %s", _name(callback), type(event).__name__, exc_info=exc)
        if not isinstance(event, ev.Error):  # an Error about a failing Error callback would loop
            self.publish(
                ev.Error(
                    code=ErrorCode.CALLBACK_FAILED,
                    message=f"{_name(callback)} raised {type(exc).__name__}: {exc}",
                    source=ErrorSource.CALLBACK,
                )
            )

    def _demote(self, entry: tuple[Types, Callback, Starter], took: float) -> None:
        """A sync callback blocked the loop: report it, and call it in a worker thread from now on."""
        types, callback, starter = entry
        if self._closed or not any(e is entry for e in self._inline):
            return  # nothing is delivered after close; a nested publish already demoted it
        self._inline = [e for e in self._inline if e is not entry]
        self.slow_callbacks += 1
        name = _name(callback)
        log.warning(
            "sync callback %s blocked the event loop for %.3fs (threshold %.3fs); "
            "it now runs in a worker thread",
            name,
            took,
            self._threshold,
        )
        receive = self._add(types)
        starter.start_soon(self._run_callback, receive, callback, True, name=f"callback {name} (thread)")
        self.publish(
            ev.Error(
                code=ErrorCode.SLOW_CALLBACK,
                message=f"sync callback {name} blocked the event loop for {took:.3f}s; "
                "it now runs in a worker thread",
                source=ErrorSource.CALLBACK,
            )
        )

    def drop_response(self, response_id: str | None) -> None:
        """Skip queued ``AudioOut`` of this response everywhere (barge-in)."""
        self._dropped_responses.append(response_id)

    def is_dropped(self, event: object) -> bool:
        """True for audio of a response that was interrupted."""
        return isinstance(event, ev.AudioOut) and event.response_id in self._dropped_responses

    def close(self) -> None:
        """End every stream (each still yields what it has queued) and wake every waiter."""
        self._closed = True
        self._remove_abandoned()
        for sub in self._subscribers:
            sub.send.close()
        self._subscribers = []
        for _, done, _ in self._waiters:
            done.set()

    async def drain(self) -> None:
        """Wait until every callback task has delivered its queue (after ``close``).

        Bound it (the session waits at most ``close_timeout``). A demoted callback
        blocked in its worker thread cannot be interrupted: when its task is then
        cancelled, the thread is abandoned, finishes the call it is in on its own,
        and is given no further events.
        """
        await self._idle.wait()

    # -------------------------------------------------------------- delivery

    async def _run_callback(
        self, receive: MemoryObjectReceiveStream[Any], callback: Callback, threaded: bool
    ) -> None:
        if self._active == 0:
            self._idle = anyio.Event()  # a drain() waiting on the current one must still be woken
        self._active += 1
        try:
            await self._deliver(receive, callback, threaded)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _deliver(
        self, receive: MemoryObjectReceiveStream[Any], callback: Callback, threaded: bool
    ) -> None:
        run_sync = anyio.to_thread.run_sync
        async with receive:
            async for first in receive:
                # One wake-up delivers the whole backlog: no task switch per event in a burst.
                batch = [first]
                with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while len(batch) < 64:
                        batch.append(receive.receive_nowait())
                for event in batch:
                    if self.is_dropped(event):
                        continue
                    try:
                        if threaded:
                            # abandon_on_cancel: close must not wait for a thread it cannot stop.
                            await run_sync(_call_in_thread, callback, event, abandon_on_cancel=True)
                        else:
                            await callback(event)
                        self.delivered += 1
                    except Exception as exc:
                        self._failed(callback, event, exc)


class EventStream:
    """What ``session.events()`` returns: ``async for event in stream``; ends at close.

    Close it with ``aclose()`` or ``async with``; one its consumer stops
    referencing (a ``break`` out of the loop) is released when it is collected.
    """

    def __init__(
        self, receive: MemoryObjectReceiveStream[Any], dispatcher: Dispatcher, sub: _Subscriber
    ) -> None:
        self._receive = receive
        self._dispatcher = dispatcher
        # The dispatcher holds no reference to the stream, only to its subscriber
        # (the sending end); this releases both once the stream is closed or collected.
        self._release = weakref.finalize(self, dispatcher._abandon, sub, receive)
        self._release.atexit = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                event = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._release()
                raise StopAsyncIteration from None
            if not self._dispatcher.is_dropped(event):
                return event

    async def aclose(self) -> None:
        """Stop receiving (events for this stream are then discarded)."""
        self._release()
        self._dispatcher._remove_abandoned()
        await self._receive.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_OVERFLOW_PROBE = ev.Error(code=ErrorCode.EVENTS_DROPPED, message="", source=ErrorSource.LOCAL)


def _overflow(count: int) -> ev.Error:
    return ev.Error(
        code=ErrorCode.EVENTS_DROPPED,
        message=f"{count} events were dropped because this consumer was too slow",
        source=ErrorSource.LOCAL,
    )


def _is_async(callback: Callback) -> bool:
    target: Any = callback
    while isinstance(target, functools.partial):
        target = target.func
    method = type(target).__dict__.get("__call__")  # an object with an async __call__
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(method)


def _name(callback: Callback) -> str:
    """The callback's qualified name (a callable object's is its class's ``__call__``)."""
    target: Any = callback
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__qualname__", None)
    if not isinstance(name, str):
        name = f"{type(target).__qualname__}.__call__"
    return name
