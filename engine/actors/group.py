"""The actors' group: tasks in the session's task group that closing can cancel alone.

``close()`` must stop every actor without cancelling the caller's code inside
``async with session.connect()``. A nested task group would do, at the price
of one more waiting task per session; instead each actor runs under its own
cancel scope, registered here, and :meth:`ActorGroup.cancel` cancels them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup


class Starter(Protocol):
    """Something that starts tasks (a task group, or an :class:`ActorGroup`)."""

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any, name: object = None) -> None: ...


class ActorGroup:
    """Starts actor tasks in ``tg``; :meth:`cancel` ends them all (and any started later)."""

    def __init__(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._scopes: set[anyio.CancelScope] = set()
        self.cancelled = False

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any, name: object = None) -> None:
        """Start ``func(*args)`` as an actor (nothing starts once cancelled)."""
        if not self.cancelled:
            self._tg.start_soon(self._run, func, args, name=name)

    async def _run(self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        if self.cancelled:
            return
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await func(*args)
            finally:
                self._scopes.discard(scope)

    def cancel(self) -> None:
        """Cancel every actor."""
        self.cancelled = True
        for scope in list(self._scopes):
            scope.cancel()
