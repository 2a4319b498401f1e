"""The public ``Session``: a facade over the connection supervisor and the pure core.

The work is done by actors under one task group (one concern and one resource
each, talking over bounded streams):

* **connection** (:mod:`engine.actors.supervisor`): opens sockets, runs the
  reader (:mod:`engine.actors.reader`), reconnects and restores, rolls over,
  closes; it steps the session's lifecycle machine (:mod:`engine.core.lifecycle`);
* **effects** (:mod:`engine.actors.effects`): performs what the core asks for;
* **writer** (:mod:`engine.actors.outbox`), the only task writing to the socket;
* **audio-in** (:mod:`engine.actors.audio_in`), **tool runner**
  (:mod:`engine.actors.tool_runner`), **dispatcher**
  (:mod:`engine.actors.dispatch`), **timers** (:mod:`engine.actors.timers`).

The facade is one class assembled from three mixins, one concern each:
:mod:`engine.actors.session_registry` (tools, callbacks, streams, ``publish``),
:mod:`engine.actors.session_inspect` (states, history, configuration, usage,
statistics) and :mod:`engine.actors.session_commands` (``send_*`` and the other
commands); this module holds the lifecycle (``connect``, ``aclose``, ``reset``),
``update``, ``ask``, ``send_raw`` and ``wait_for``.

The public API is in trio's style: every ``async`` call checkpoints
(``send_audio``: see there), a call that cannot block is sync (``send_audio_nowait``,
``publish``), ``aclose()`` closes within ``close_timeout`` (even when the server
never answers) and wakes every waiter, ``statistics()`` is a frozen record.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from engine.actors import asks, raw
from engine.actors.dispatch import Callback, Dispatcher
from engine.actors.effects import end_call_tool
from engine.actors.group import ActorGroup
from engine.actors.loop import loop_caller
from engine.actors.session_commands import Commands
from engine.actors.session_inspect import Inspection
from engine.actors.session_registry import Registration
from engine.actors.settings import SessionSettings
from engine.actors.supervisor import Supervisor
from engine.actors.values import to_item
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.lifecycle import Lifecycle, LifecycleMachine
from engine.errors import UsageError, UsageTypeError, unwrap
from engine.observe.usage import UsageLedger
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item
from engine.protocol.text import check_config, check_item, check_text
from engine.providers import Provider
from engine.tools import Tool
from engine.transports.base import Connector

E = TypeVar("E")


class Session(Registration, Inspection, Commands):
    """One realtime voice session. See ``README.md`` for a walk-through.

    Args:
        provider: ``engine.Inworld(...)`` or ``engine.OpenAI(...)``.
        config: the session configuration (provider defaults fill what is unset).
        history: an initial conversation, sent as items before the first response:
            ``engine.Item`` objects or chat-style dicts (``{"role": "user", "content": "hi"}``).
        settings: runtime deadlines and queue bounds.
        connector: how to open the socket (default: by the running backend).
        record: write a replayable JSON-lines recording of the session to this path
            (``python -m engine replay FILE``); secrets are never recorded.
        record_audio: keep audio bytes in the recording (default: lengths only).

    Every command (``send_*``, ``commit_audio``, ``clear_audio``, ``create_response``,
    ``cancel_response``, ``interrupt``, ``update``, ``ask``, ``reset``) raises ``NotConnected``
    before ``connect()`` and ``SessionClosed`` once the session is closing or closed
    (its ``reason`` and ``error`` say why). Misuse raises a ``UsageError`` (a ``TypeError``
    or ``ValueError`` too where that is what it is) and sends nothing; what the server
    does wrong arrives as ``Error`` events (``engine.errors`` states the policy).

    Raises:
        ValueError: a ``history`` entry cannot be sent (too large, or text UTF-8 cannot carry), or
            ``config`` is larger than ``settings.max_config_bytes`` (so is ``connect()``, with the tools).
    """

    def __init__(
        self,
        provider: Provider,
        config: SessionConfig | None = None,
        *,
        history: Iterable[Item | Mapping[str, Any]] = (),
        settings: SessionSettings | None = None,
        connector: Connector | None = None,
        record: str | Path | None = None,
        record_audio: bool = False,
    ) -> None:
        self.provider = provider
        self._config = config or SessionConfig()
        self.settings = settings or SessionSettings()
        self._initial = tuple(to_item(h) for h in history)
        for number, item in enumerate(self._initial):  # a restore replays each: refuse what cannot be sent
            check_item(item, self.settings.max_item_bytes, f"history entry {number}")
        check_config(self._config, self.settings.max_config_bytes)
        self._record = (Path(record), record_audio) if record is not None else None
        self._tools: dict[str, Tool] = {}
        if self.settings.call_policy is not None and self.settings.call_policy.end_call:
            self.add_tool(end_call_tool())
        self._callbacks: list[tuple[tuple[type, ...] | None, Callback]] = []
        self._usage = UsageLedger()  # every turn's usage and cost, for usage()
        self._dispatcher = Dispatcher(
            event_buffer=self.settings.event_buffer,
            slow_callback_threshold=self.settings.slow_callback_threshold,
        )
        self._lifecycle = LifecycleMachine()
        self._supervisor = Supervisor(provider, self.settings, self._dispatcher, self._lifecycle, connector)
        self._group: ActorGroup | None = None  # while connected: where callbacks added late run
        self._paused = False
        self._loop_thread: int | None = None
        self._call_soon: Callable[..., object] | None = None
        self._raw = self.settings.raw_events  # build RawEvents (someone asked for them)

    def __repr__(self) -> str:
        return f"<Session provider={self.provider.name} lifecycle={self._lifecycle.state} state={self.state}>"

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Session]:
        """Open the session; the body runs once it is ready. Leaving it closes the session.

        A dropped socket is reconnected and the conversation restored
        (``Reconnecting`` / ``Reconnected`` events) without leaving the body.

        Raises:
            UsageError: the session was connected (or closed) before: a session connects once.
            HandshakeError: the server refused the connection (401/403: bad credentials).
            TransportError: the socket could not be opened (after the retries of ``settings.reconnect``).
            SessionClosed: the session ended under the body (``error`` is the fatal ``Error``).
            TimeoutError: not ready within ``settings.ready_timeout``.
        """
        if self._lifecycle.current is not Lifecycle.NEW:
            raise UsageError("a session connects once; create a new Session to connect again")
        supervisor = self._supervisor
        initial = self.provider.prepare(self._with_tools(self._config))
        check_config(initial, self.settings.max_config_bytes, "the configuration with its tools")
        body_done = False
        try:
            async with anyio.create_task_group() as tg:
                group = self._group = ActorGroup(tg)
                self._loop_thread, self._call_soon = threading.get_ident(), loop_caller()
                supervisor.start(
                    group,
                    tg.cancel_scope,
                    initial,
                    history=self._initial,
                    tools=self._tools,
                    record=self._record,
                    paused=self._paused,
                )
                self._ask_raw(())
                self._dispatcher.add_callback(group, (ev.TurnMetrics,), self._usage.add)
                for kinds, callback in self._callbacks:
                    self._dispatcher.add_callback(group, kinds, callback)
                try:
                    with anyio.fail_after(self.settings.ready_timeout):
                        await supervisor.wait_started()
                    yield self
                    body_done = True
                finally:
                    with anyio.CancelScope(shield=True):
                        await supervisor.shutdown("closed by the application")
        except BaseExceptionGroup as group_error:
            raise unwrap(group_error, cancelled=anyio.get_cancelled_exc_class()) from None
        finally:
            self._group = None
        if not body_done:
            # The session ended under the body; say why instead of returning quietly.
            if supervisor.failure is not None:
                raise supervisor.failure
            raise self._closed("the session ended")

    async def aclose(self) -> None:
        """Close the session (idempotent); returns within ``settings.close_timeout``.

        Called inside ``async with session.connect()``, the body goes on (commands
        then raise ``SessionClosed``) and leaving the block is quiet. As trio's
        ``aclose``, a cancelled call still closes (shielded), then raises ``Cancelled``.
        """
        await self._supervisor.shutdown("closed by the application")
        await anyio.lowlevel.checkpoint()

    async def close(self) -> None:
        """Alias of :meth:`aclose`."""
        await self.aclose()

    async def reset(self) -> None:
        """Start a fresh server conversation on a new socket, restoring the mirrored history.

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing, or closed before it was back.
            TimeoutError: not back within ``settings.ready_timeout``.
        """
        self._live()
        await anyio.lowlevel.checkpoint()
        await self._supervisor.reset()
        await self.wait_for(ev.Reconnected, timeout=self.settings.ready_timeout)

    # ------------------------------------------------------------------ commands

    async def update(self, config: SessionConfig) -> ev.ConfigApplied:
        """Send a new configuration; return the server's ``ConfigApplied`` once it applied it.

        Raises:
            NotConnected: before ``connect()``.
            TypeError: ``config`` is not a ``SessionConfig`` (a ``UsageTypeError``).
            ValueError: ``config`` with the tools is larger than ``settings.max_config_bytes``.
            ConfigError: a field the provider does not take (refused locally).
            UpdateRejected: the server would refuse it now (nothing is sent), refused it (``param``,
                ``code``), or gave no answer in ``settings.response_timeout`` (``update_timeout``).
            SessionClosed: the session closed before the answer.
        """
        conv, effects = self._live()
        if not isinstance(config, SessionConfig):
            raise UsageTypeError(f"update(): config must be a SessionConfig, got {type(config).__name__}")
        prepared = self.provider.prepare(self._with_tools(config))
        check_config(prepared, self.settings.max_config_bytes, "update()'s configuration with its tools")
        out = conv.handle(cmd.Update(config=prepared))  # raises first
        self._config = config  # session.config is the core's: back to the old one if refused
        return await raw.acknowledged(self._dispatcher, effects, out, conv.pending_updates[-1], self._closed)

    async def ask(
        self,
        prompt: str,
        *,
        instructions: str | None = None,
        context: str = "conversation",
        timeout: float = 30.0,  # noqa: ASYNC109 (the core's deadline, recorded with the ask)
    ) -> str:
        """Ask the model a side question; return its text answer, which never enters the call.

        An out-of-band response (``conversation: "none"``, text only): nothing is said to
        the caller, nothing is added to the history, the response in flight goes on. With
        ``context="conversation"`` the model sees the call so far and ``prompt`` is the
        response's instructions (after ``instructions``, if given); with ``"none"`` it sees
        only ``prompt`` as a user message, under ``instructions`` (default: the session's).
        The ``OutOfBandDone`` event (with the answer's own ``usage``) reaches callbacks too.

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing, or closed before the answer.
            ConfigError: the provider's profile has no out-of-band responses (refused locally).
            TypeError / ValueError: a bad argument (a ``UsageError``); nothing is sent.
            AskFailed: no answer: the response failed or was cancelled, the server refused the
                request (its code), no answer within ``timeout`` (``ask_timeout``), or the
                socket dropped (``ask_lost``).
        """
        conv, effects = self._live()
        self.provider.profile.check_feature("out_of_band_responses", "ask()")
        command = cmd.Ask(prompt=prompt, instructions=instructions, context=context, timeout=timeout)
        check_text(prompt, "ask()")
        if instructions is not None:
            check_text(instructions, "ask()")
        check_item(Item.user_text(f"{instructions or ''}{prompt}"), self.settings.max_item_bytes, "ask()")
        out = conv.handle(command)
        assert conv.newest_ask is not None
        done = await asks.answered(self._dispatcher, effects, out, conv.newest_ask, self._closed)
        return done.text

    async def send_raw(self, event: Mapping[str, Any]) -> None:
        """Send a client event this library does not model yet, never around the core (:func:`raw.send`).

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing, closed, or not ready for an unknown type.
            TypeError / ValueError / ProtocolError: ``event`` is not a valid client event
                (:func:`engine.actors.raw.route` says which); nothing is sent.
        """
        conv, effects = self._live()
        await raw.send(self, conv, effects, event)

    async def wait_for(self, kind: type[E], timeout: float | None = None) -> E:  # noqa: ASYNC109 (public API)
        """The next event of ``kind``.

        Raises:
            TimeoutError: none within ``timeout`` seconds.
            SessionClosed: the session closed first (``reason`` and ``error`` say why).
        """
        try:
            result: E = await self._dispatcher.wait_for(kind, timeout)
        except EOFError:
            raise self._closed("the session closed before the event arrived") from None
        return result
