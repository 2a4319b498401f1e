"""The session lifecycle: one machine for the socket's life, stepped by the supervisor.

Theory of operation
-------------------
A session is ``new`` until ``connect()``; it is ``connecting`` until the
first socket's session is ready (a socket that fails before that is retried
under the reconnect policy and stays ``connecting``); then ``open``. A dropped
socket makes it ``reconnecting`` until a new socket is ready again.

Rollover (``max_session_duration``; ``reset()``) is a state, not a flag: the
duration's timer makes an open session ``rollover_due``, which stays open
for traffic and waits for a turn boundary (the ``between_turns`` guard: no
speech, no response, no tool call open), so no speech or tool work is cut.
Then it is ``rolling_over``: the supervisor closes the socket on purpose,
and the drop that follows is planned (no failure counted, no backoff); the
new socket is ``reconnecting`` like any other. ``reset()`` rolls over at once.

``close`` (the application, a fatal error, giving up) makes any state
``closing``; ``finished`` makes it ``closed`` once everything has stopped.

The table is the only definition; :class:`LifecycleMachine` steps it through
the same shared ``transitions`` machine and lookup plan as the conversation
machines (:func:`engine.core.states.fire`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from engine.core.states import fire, plan_of, shared


class Lifecycle(enum.StrEnum):
    """Where the session's connection stands. The values are the public names."""

    NEW = "new"
    CONNECTING = "connecting"
    OPEN = "open"
    ROLLOVER_DUE = "rollover_due"
    ROLLING_OVER = "rolling_over"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"


L = Lifecycle
_UP = [L.OPEN, L.ROLLOVER_DUE]  # a ready socket carries traffic
_RUNNING = [L.CONNECTING, *_UP, L.ROLLING_OVER, L.RECONNECTING]

LIFECYCLE_TRANSITIONS: list[dict[str, Any]] = [
    # connect(): the first socket is being opened.
    {"trigger": "start", "source": L.NEW, "dest": L.CONNECTING},
    # The socket's session is ready (SessionReady): the session carries traffic.
    {"trigger": "ready", "source": [L.CONNECTING, L.RECONNECTING], "dest": L.OPEN},
    {"trigger": "ready", "source": [*_UP, L.ROLLING_OVER, L.CLOSING, L.CLOSED], "dest": None},
    # max_session_duration elapsed: roll over at the next turn boundary.
    {"trigger": "rollover_due", "source": L.OPEN, "dest": L.ROLLOVER_DUE},
    {"trigger": "rollover_due", "source": [L.ROLLOVER_DUE, L.CONNECTING, L.ROLLING_OVER, L.RECONNECTING],
     "dest": None},  # a socket that is not up gets a fresh timer when it is ready
    # After each batch of effects: roll over if the conversation is between turns.
    {"trigger": "turn_boundary", "source": L.ROLLOVER_DUE, "dest": L.ROLLING_OVER,
     "conditions": "between_turns"},
    # reset(): roll over now, whatever the turn.
    {"trigger": "reset", "source": _UP, "dest": L.ROLLING_OVER},
    {"trigger": "reset", "source": [L.CONNECTING, L.ROLLING_OVER, L.RECONNECTING], "dest": None},
    # The socket ended: planned (rolling_over) or not; before the first ready we are still connecting.
    {"trigger": "dropped", "source": [*_UP, L.ROLLING_OVER, L.RECONNECTING], "dest": L.RECONNECTING},
    {"trigger": "dropped", "source": L.CONNECTING, "dest": None},
    # close(), a fatal error, or the reconnect policy gave up: stop everything (bounded).
    {"trigger": "close", "source": [L.NEW, *_RUNNING], "dest": L.CLOSING},
    {"trigger": "finished", "source": L.CLOSING, "dest": L.CLOSED},
]


class LifecycleMachine:
    """One session's lifecycle state, stepped through :data:`LIFECYCLE_TRANSITIONS`.

    Args:
        between_turns: the ``between_turns`` guard (is the conversation idle?),
            asked only when a due rollover looks for a turn boundary.
    """

    __slots__ = ("_between_turns", "_plan", "state")

    def __init__(self, between_turns: Callable[[], bool] = lambda: True) -> None:
        self.state: str = L.NEW.value
        self._between_turns = between_turns
        self._plan = plan_of(shared(Lifecycle, LIFECYCLE_TRANSITIONS, L.NEW))

    @property
    def current(self) -> Lifecycle:
        """The state as a :class:`Lifecycle` member."""
        return Lifecycle(self.state)

    def between_turns(self) -> bool:
        """The guard of ``turn_boundary``."""
        return self._between_turns()

    def guard_with(self, between_turns: Callable[[], bool]) -> None:
        """Use ``between_turns`` as the guard from now on (the conversation exists once connected)."""
        self._between_turns = between_turns

    def fire(self, trigger: str) -> bool:
        """Step by ``trigger``; False when its guard held it back.

        Raises ``transitions.MachineError`` when ``trigger`` is not allowed in this state.
        """
        return fire(self._plan, self, trigger)

    @property
    def ending(self) -> bool:
        """``closing`` or ``closed``: nothing new starts."""
        return self.state in _ENDING


_ENDING = frozenset({L.CLOSING.value, L.CLOSED.value})
