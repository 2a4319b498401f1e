"""What the live view shows of a call, and its fan-out to read-only watchers.

:class:`ViewTracker` turns a call's session events into the live view's
messages (:func:`~engine.gateway.browser_protocol.event_view`), adding a
``state`` message whenever a machine other than the conversation (whose
changes are events of their own) is seen in a new state: every machine of
:data:`engine.core.states.MACHINES` is followed, so a machine added to the
registry shows up without a change here.

:class:`CallFeed` keeps one call's view for watchers (``WS /calls/{id}/watch``
and ``/calls``): the machines' current states, the last turn's latency, a
bounded history (``HISTORY`` messages: a watcher that joins late sees the call
so far, clipped) and one bounded queue per watcher. **Overflow policy:** a
watcher that falls ``WATCHER_QUEUE`` messages behind loses the *oldest*
queued messages (the newest say what the call is doing now) and is then sent a
``gap`` message with the count and the current states, so its diagram is
right again. Publishing never waits, so a slow watcher never slows the call.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
import attrs

from engine.core import events as ev
from engine.core.states import MACHINES
from engine.gateway.browser_protocol import event_view

HISTORY = 500
_VIEWED = tuple(
    kind
    for kind in (getattr(ev, name) for name in ev.__all__)
    if isinstance(kind, type) and attrs.has(kind) and kind is not ev.AudioOut
)
"""What a feed observes: every session event but audio, the bulk of a call's events (one per
chunk), which the view never shows and on which no machine changes state. Observing audio too
cost about a fifth of the phone downlink's CPU per frame (benchmarks/phone.py)."""
WATCHER_QUEUE = 256

# Where each machine's current state is read on a Session (others: an attribute named after it).
_READERS: dict[str, Callable[[Any], Any]] = {
    "conversation": lambda session: session.state,
    "response": lambda session: session.phase,
}


def _core_states(session: Any) -> Mapping[str, Any]:
    """Every machine's state from the public ``Session.states`` (``{}`` for an object without it)."""
    public = getattr(session, "states", None)
    return public if isinstance(public, Mapping) else {}


def machine_states(session: Any) -> dict[str, str]:
    """The current state of every registered machine the session exposes, by machine name."""
    core = _core_states(session)
    out: dict[str, str] = {}
    for spec in MACHINES:
        value = core.get(spec.name)
        if value is None:
            reader = _READERS.get(spec.name, lambda s, name=spec.name: getattr(s, name, None))
            try:
                value = reader(session)
            except Exception:  # a machine the session does not expose (yet): not shown
                continue
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, str):
            out[spec.name] = value
    return out


class ViewTracker:
    """One call's events as live-view messages (see the module docstring); ``t`` from ``started``."""

    def __init__(self, states: dict[str, str], started: float, clock: Callable[[], float]) -> None:
        self.states = dict(states)
        self.metrics: dict[str, Any] | None = None
        self._started = started
        self._clock = clock

    def seen(self, event: object, states: dict[str, str]) -> list[dict[str, Any]]:
        """The messages for ``event``, with the machines' states read right after it."""
        t = self._clock() - self._started
        out: list[dict[str, Any]] = []
        view = event_view(event, t)
        if view is not None:
            out.append(view)
            if view["kind"] == "metrics":
                self.metrics = view
        if isinstance(event, ev.StateChanged):
            self.states["conversation"] = event.new.value
        for machine, state in states.items():
            if machine == "conversation" or self.states.get(machine) == state:
                continue
            old = self.states.get(machine)
            self.states[machine] = state
            out.append({"kind": "state", "machine": machine, "old": old, "new": state, "t": round(t, 3)})
        return out


class _Watcher:
    def __init__(self, size: int) -> None:
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.size = size
        self.dropped = 0
        self.wake = anyio.Event()


class CallFeed:
    """One call's live view for watchers; see the module docstring for the overflow policy."""

    def __init__(
        self,
        call_id: str,
        kind: str,
        *,
        states: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        history: int = HISTORY,
        queue: int = WATCHER_QUEUE,
    ) -> None:
        self.call_id = call_id
        self.kind = kind
        self.started = clock()
        self.tracker = ViewTracker(states or {}, self.started, clock)
        self.closed = False
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self._queue_size = queue
        self._watchers: set[_Watcher] = set()

    @property
    def states(self) -> dict[str, str]:
        """Each machine's current state."""
        return dict(self.tracker.states)

    @property
    def last_metrics(self) -> dict[str, Any] | None:
        """The last turn's latency message, if a turn has finished."""
        return self.tracker.metrics

    def seen(self, event: object, states: dict[str, str]) -> None:
        """A session event (and the states after it): published to every watcher."""
        for message in self.tracker.seen(event, states):
            self.publish(message)
        if isinstance(event, ev.Closed):
            self.close()

    def publish(self, message: dict[str, Any]) -> None:
        """Append to the history and to every watcher's queue (dropping its oldest when full)."""
        self.history.append(message)
        for watcher in self._watchers:
            if len(watcher.queue) >= watcher.size:
                watcher.queue.popleft()
                watcher.dropped += 1
            watcher.queue.append(message)
            watcher.wake.set()

    def close(self) -> None:
        """The call ended: every watcher's stream ends after what is queued."""
        self.closed = True
        for watcher in self._watchers:
            watcher.wake.set()

    @contextmanager
    def watch(self) -> Iterator[Callable[[], Any]]:
        """A watcher for the block: ``await next_message()`` gives the next message, None at the end.

        It starts with the history so far (clipped to ``HISTORY``).
        """
        watcher = _Watcher(self._queue_size)
        watcher.queue.extend(list(self.history)[-self._queue_size :])
        self._watchers.add(watcher)

        async def next_message() -> dict[str, Any] | None:
            while not watcher.queue:
                if self.closed:
                    return None
                watcher.wake = anyio.Event()
                await watcher.wake.wait()
            if watcher.dropped:
                dropped, watcher.dropped = watcher.dropped, 0
                return {"kind": "gap", "dropped": dropped, "states": self.states}
            return watcher.queue.popleft()

        try:
            yield next_message
        finally:
            self._watchers.discard(watcher)


class Feeds:
    """The live calls' feeds by gateway call id (phone and browser)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._feeds: dict[str, CallFeed] = {}
        self._clock = clock

    def open(self, call_id: str, kind: str, session: Any) -> CallFeed:
        """A feed for a call whose session was just built; the session's events reach it."""
        feed = self._feeds[call_id] = CallFeed(
            call_id, kind, states=machine_states(session), clock=self._clock
        )

        async def observe(event: object) -> None:  # async: runs on the event loop, never in a thread
            feed.seen(event, machine_states(session))

        session.on(*_VIEWED)(observe)
        return feed

    def get(self, call_id: str) -> CallFeed | None:
        return self._feeds.get(call_id)

    def discard(self, call_id: str) -> None:
        """Forget an ended call's feed (its watchers end)."""
        feed = self._feeds.pop(call_id, None)
        if feed is not None:
            feed.close()
