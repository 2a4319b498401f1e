"""Timers: the core's named deadlines, served by one task that lives while any is armed.

The pure core asks for timers with ``ArmTimer``/``CancelTimer`` effects and
hears back through ``fire(name)``. The core arms and cancels a timer on every
turn (the response deadline), so neither may start a task: arming writes a
deadline, cancelling erases it, and a single task sleeps until the earliest
one. That task starts on the first arm and ends once nothing is armed when it
wakes, so an idle session has no timer task at all.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio

from engine.actors.group import Starter


class Timers:
    """Named one-shot timers; re-arming a name replaces it.

    ``clock`` must be the event loop's clock (the one cancel-scope deadlines use).
    """

    def __init__(
        self, tg: Starter, fire: Callable[[str], Awaitable[None]], clock: Callable[[], float]
    ) -> None:
        self._tg = tg
        self._fire = fire
        self._clock = clock
        self._deadlines: dict[str, float] = {}
        self._sleep: anyio.CancelScope | None = None  # the task's current sleep, None when not sleeping
        self._running = False

    @property
    def armed(self) -> frozenset[str]:
        """The names armed now."""
        return frozenset(self._deadlines)

    def arm(self, name: str, delay: float) -> None:
        """(Re)arm ``name`` to fire ``delay`` seconds from now."""
        deadline = self._clock() + delay
        self._deadlines[name] = deadline
        if not self._running:
            self._running = True
            self._tg.start_soon(self._run, name="timers")
        elif self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline  # wake earlier; a later deadline waits for the next wake

    def cancel(self, name: str) -> None:
        """Disarm ``name`` if armed (the task, if sleeping toward it, wakes to find nothing due)."""
        self._deadlines.pop(name, None)

    async def _run(self) -> None:
        try:
            while self._deadlines:
                with anyio.CancelScope(deadline=min(self._deadlines.values())) as sleep:
                    self._sleep = sleep
                    await anyio.sleep_forever()
                self._sleep = None
                now = self._clock()
                for name in [n for n, d in self._deadlines.items() if d <= now]:
                    # An earlier fire may have re-armed or cancelled it.
                    if self._deadlines.get(name, math.inf) <= now:
                        del self._deadlines[name]
                        await self._fire(name)
        finally:
            self._sleep = None
            self._running = False
