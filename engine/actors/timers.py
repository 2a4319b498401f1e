"""The timers actor: named deadlines on the running loop's clock.

The pure core asks for timers with ``ArmTimer``/``CancelTimer`` effects and
hears back through ``fire(name)``; this actor is the only place that sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


class Timers:
    """Named one-shot timers served by a single task."""

    def __init__(self, fire: Callable[[str], Awaitable[None]]) -> None:
        self._fire = fire
        self._deadlines: dict[str, float] = {}
        self._changed = anyio.Event()

    def arm(self, name: str, delay: float) -> None:
        """(Re)arm ``name`` to fire ``delay`` seconds from now."""
        self._deadlines[name] = anyio.current_time() + delay
        self._changed.set()

    def cancel(self, name: str) -> None:
        """Disarm ``name`` if armed."""
        if self._deadlines.pop(name, None) is not None:
            self._changed.set()

    def armed(self) -> tuple[str, ...]:
        """Names of armed timers."""
        return tuple(self._deadlines)

    async def run(self) -> None:
        """Fire timers as they fall due; runs until cancelled."""
        while True:
            self._changed = anyio.Event()
            if not self._deadlines:
                await self._changed.wait()
                continue
            name, when = min(self._deadlines.items(), key=lambda kv: kv[1])
            with anyio.move_on_after(max(0.0, when - anyio.current_time())):
                await self._changed.wait()
                continue
            if self._deadlines.get(name) == when:
                del self._deadlines[name]
                await self._fire(name)
