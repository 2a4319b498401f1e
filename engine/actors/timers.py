"""Timers: the core's named deadlines, each a short task while it is armed.

The pure core asks for timers with ``ArmTimer``/``CancelTimer`` effects and
hears back through ``fire(name)``. An armed timer is one sleeping task in the
session's task group; an idle session has none, which keeps idle sessions small.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from engine.actors.group import Starter


class Timers:
    """Named one-shot timers; re-arming a name replaces it."""

    def __init__(self, tg: Starter, fire: Callable[[str], Awaitable[None]]) -> None:
        self._tg = tg
        self._fire = fire
        self._scopes: dict[str, anyio.CancelScope] = {}

    def arm(self, name: str, delay: float) -> None:
        """(Re)arm ``name`` to fire ``delay`` seconds from now."""
        self.cancel(name)
        scope = self._scopes[name] = anyio.CancelScope()
        self._tg.start_soon(self._run, name, delay, scope, name=f"timer {name}")

    def cancel(self, name: str) -> None:
        """Disarm ``name`` if armed."""
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()

    async def _run(self, name: str, delay: float, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(delay)
            if self._scopes.get(name) is scope:
                del self._scopes[name]
                await self._fire(name)
