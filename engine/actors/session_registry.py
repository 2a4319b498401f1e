"""What the application registers with a ``Session``: tools, callbacks, event streams, its own events.

A mixin of :class:`engine.actors.session.Session` (the facade stays one class).
Tools and callbacks may be registered before ``connect()`` (they apply when it
opens) or while connected (a callback starts at once; a tool at the next
``update``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio.from_thread
import attrs

from engine.actors.dispatch import Callback, Dispatcher, EventStream, in_callback_thread
from engine.core import events as ev
from engine.protocol.config import SessionConfig
from engine.tools import Tool

if TYPE_CHECKING:
    from engine.actors.group import ActorGroup
    from engine.actors.supervisor import Supervisor

E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])


class Registration:
    """The ``Session``'s registration calls (its state is set up by ``Session.__init__``)."""

    _tools: dict[str, Tool]
    _callbacks: list[tuple[tuple[type, ...] | None, Callback]]
    _dispatcher: Dispatcher
    _supervisor: Supervisor
    _group: ActorGroup | None
    _raw: bool

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self, fn: None = None, /, *, name: str | None = None, timeout: float = 30.0,
        cancel_on_interrupt: bool = True,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        timeout: float = 30.0,
        cancel_on_interrupt: bool = True,
    ) -> F | Callable[[F], F]:
        """Register a function as a tool (``@session.tool`` or ``@session.tool(name=...)``).

        Its schema comes from its signature and docstring; the function is returned unchanged.

        Raises:
            ValueError: ``timeout`` is not positive (a ``UsageValueError``).
        """

        def register(f: F) -> F:
            self.add_tool(
                Tool.from_function(f, name=name, timeout=timeout, cancel_on_interrupt=cancel_on_interrupt)
            )
            return f

        return register(fn) if fn is not None else register

    def add_tool(self, tool: Tool) -> None:
        """Register a tool with an explicit schema (applied at the next connect or ``update``)."""
        self._tools[tool.name] = tool

    def on(self, *types: type[E]) -> Callable[[F], F]:
        """Register a callback (sync or async) for these event types (all events if none).

        A sync callback is called inline and must be quick: one call longer than
        ``settings.slow_callback_threshold`` is reported (``Error`` ``slow_callback``) and
        from then on it is called in a worker thread (so it must not call the session).
        """

        def register(callback: F) -> F:
            kinds = types or None
            self._ask_raw(types)
            self._callbacks.append((kinds, callback))
            if self._group is not None:
                self._dispatcher.add_callback(self._group, kinds, callback)
            return callback

        return register

    def publish(self, event: object) -> None:
        """Deliver an application-defined event to the callbacks, streams and waiters.

        For events the application adds to the session's own (the gateway's
        ``Dtmf``, for one): each subscriber gets it in order with the session's
        events, under the same queue bounds. A frozen ``attrs`` class makes a
        good event; reusing :mod:`engine.events` classes would mislead other
        subscribers.
        """
        if in_callback_thread():
            anyio.from_thread.run_sync(self.publish, event)
            return
        self._dispatcher.publish(event)

    def events(self, *types: type) -> EventStream:
        """An async iterator of the same events as the callbacks (from now on); ends at close.

        Close it with ``aclose()`` or ``async with`` when done early; one left with
        ``break`` and no longer referenced is released when it is collected.
        """
        self._ask_raw(types)
        return self._dispatcher.stream(types or None)

    def _ask_raw(self, types: tuple[type, ...]) -> None:
        self._raw = self._raw or ev.RawEvent in types
        if self._raw and self._supervisor.conv is not None:
            self._supervisor.conv.raw_events = True

    def _with_tools(self, config: SessionConfig) -> SessionConfig:
        if not self._tools:
            return config
        own = {t.name for t in config.function_tools}
        extra = tuple(t.schema for t in self._tools.values() if t.name not in own)
        return attrs.evolve(config, tools=config.tools + extra)
