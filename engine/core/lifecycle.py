"""The session lifecycle, stepped: a small pure object over the table in :mod:`engine.core.states`.

Theory of operation
-------------------
A session is ``new`` until ``connect()``; it is ``connecting`` until the
first socket's session is ready (a socket that fails before that is retried
under the reconnect policy and stays ``connecting``); then ``open``. A dropped
socket makes it ``reconnecting`` until a new socket is ready again, which is
announced (``Reconnected``).

Rollover (``max_session_duration``; ``reset()``) is a state, not a flag: the
duration's timer makes an open session ``rollover_due``, which stays open
for traffic and waits for a turn boundary (the ``between_turns`` guard: no
speech, no response, no tool call open), so no speech or tool work is cut.
Then it is ``rolling_over``: entering it closes the socket on purpose, and
the drop that follows is planned (no failure counted, no backoff); the new
socket is ``reconnecting`` like any other. ``reset()`` rolls over at once.

``close`` (the application, a fatal error, giving up) makes any state
``closing``; ``finished`` makes it ``closed`` once everything has stopped.

The machine's actions (``arm_rollover``, ``close_socket``,
``announce_reconnected``) are not done here: stepping collects their names,
and the supervisor does them (:meth:`LifecycleMachine.take_actions`), as the
conversation core returns effects. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.core.states import LIFECYCLE_ACTIONS, LIFECYCLE_TRANSITIONS, Lifecycle, fire, plan_of, shared

ARM_ROLLOVER = "arm_rollover"
CLOSE_SOCKET = "close_socket"
ANNOUNCE_RECONNECTED = "announce_reconnected"

_ENDING = frozenset({Lifecycle.CLOSING.value, Lifecycle.CLOSED.value})

__all__ = ["ANNOUNCE_RECONNECTED", "ARM_ROLLOVER", "CLOSE_SOCKET", "Lifecycle", "LifecycleMachine"]


class LifecycleMachine:
    """One session's lifecycle state, stepped through :data:`~engine.core.states.LIFECYCLE_TRANSITIONS`.

    Args:
        between_turns: the ``between_turns`` guard (is the conversation idle?),
            asked only when a due rollover looks for a turn boundary.
    """

    __slots__ = ("_actions", "_between_turns", "_plan", "on_step", "state")

    def __init__(self, between_turns: Callable[[], bool] = lambda: True) -> None:
        self.state: str = Lifecycle.NEW.value
        self._between_turns = between_turns
        self._actions: list[str] = []
        self._plan = plan_of(shared(Lifecycle, LIFECYCLE_TRANSITIONS, Lifecycle.NEW, LIFECYCLE_ACTIONS))
        # Told ("lifecycle", old, new) after every move (engine.observe uses it), as the core's on_step.
        self.on_step: Callable[[str, str, str], None] | None = None

    @property
    def current(self) -> Lifecycle:
        """The state as a :class:`Lifecycle` member."""
        return Lifecycle(self.state)

    @property
    def ending(self) -> bool:
        """``closing`` or ``closed``: nothing new starts."""
        return self.state in _ENDING

    def guard_with(self, between_turns: Callable[[], bool]) -> None:
        """Use ``between_turns`` as the guard from now on (the conversation exists once connected)."""
        self._between_turns = between_turns

    def fire(self, trigger: str) -> bool:
        """Step by ``trigger``; False when its guard held it back. Actions are collected.

        Raises ``transitions.MachineError`` when ``trigger`` is not allowed in this state.
        """
        old = self.state
        moved = fire(self._plan, self, trigger)
        if self.on_step is not None and self.state != old:
            self.on_step("lifecycle", old, self.state)
        return moved

    def take_actions(self) -> list[str]:
        """The actions the steps so far asked for, in order (and forget them)."""
        actions, self._actions = self._actions, []
        return actions

    # The table's guard and actions (names the plan calls on this model).

    def between_turns(self) -> bool:
        """The guard of ``turn_boundary``."""
        return self._between_turns()

    def arm_rollover(self) -> None:
        self._actions.append(ARM_ROLLOVER)

    def close_socket(self) -> None:
        self._actions.append(CLOSE_SOCKET)

    def announce_reconnected(self) -> None:
        self._actions.append(ANNOUNCE_RECONNECTED)
