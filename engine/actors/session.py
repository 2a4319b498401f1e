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

This module is the public API only, in trio's style: every ``async`` call
checkpoints (``send_audio``: see there), a call that cannot block is sync (``send_audio_nowait``,
``publish``), ``aclose()`` closes within ``close_timeout`` (even when the server
never answers) and wakes every waiter, ``statistics()`` is a frozen record.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

import anyio
import anyio.lowlevel
import attrs

from engine.actors import raw
from engine.actors.dispatch import Callback, Dispatcher, EventStream, in_callback_thread
from engine.actors.effects import Interpreter, end_call_tool
from engine.actors.group import ActorGroup
from engine.actors.loop import loop_caller
from engine.actors.settings import SessionSettings
from engine.actors.supervisor import Supervisor
from engine.actors.values import SessionStatistics, to_item
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.conversation import Conversation
from engine.core.diagram import diagram
from engine.core.lifecycle import Lifecycle, LifecycleMachine
from engine.core.states import CORE_MACHINES, Phase, State
from engine.errors import NotConnected, SessionClosed, UsageError, UsageTypeError, unwrap
from engine.observe.usage import CallUsage, UsageLedger
from engine.protocol.client import ResponseParams
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item, image_data_url
from engine.protocol.text import check_item, check_text
from engine.providers import Provider
from engine.tools import Tool
from engine.transports.base import Connector

E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])


class Session:
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
    ``cancel_response``, ``interrupt``, ``update``, ``reset``) raises ``NotConnected``
    before ``connect()`` and ``SessionClosed`` once the session is closing or closed
    (its ``reason`` and ``error`` say why). Misuse raises a ``UsageError`` (a ``TypeError``
    or ``ValueError`` too where that is what it is) and sends nothing; what the server
    does wrong arrives as ``Error`` events (``engine.errors`` states the policy).

    Raises:
        ValueError: a ``history`` entry cannot be sent (too large, or text UTF-8 cannot carry).
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

    # ------------------------------------------------------------------ registration

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

    # ------------------------------------------------------------------ inspection

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the connection stands: ``new``, ``connecting``, ``open``, ``rollover_due``, ``rolling_over``,
        ``reconnecting``, ``closing``, ``closed``."""
        return self._lifecycle.current

    @property
    def state(self) -> State:
        """Whose turn it is (``State.CONNECTING`` before the first connect)."""
        conv = self._supervisor.conv
        return conv.state if conv is not None else State.CONNECTING

    @property
    def phase(self) -> Phase:
        """Where the response slot stands."""
        conv = self._supervisor.conv
        return conv.phase if conv is not None else Phase.IDLE

    @property
    def history(self) -> tuple[Item, ...]:
        """The locally mirrored conversation items, in order."""
        conv = self._supervisor.conv
        return conv.history.items() if conv is not None else self._initial

    @property
    def config(self) -> SessionConfig:
        """The configuration as last sent (with provider defaults and registered tools)."""
        conv = self._supervisor.conv
        return conv.config if conv is not None else self._config

    @property
    def states(self) -> Mapping[str, str]:
        """Every machine's current state by machine name (``lifecycle`` included), a snapshot.

        The names are those of ``engine.core.states.MACHINES``; before the first connect the
        core's machines read their initial states.
        """
        conv = self._supervisor.conv
        current = dict(conv.states) if conv is not None else _initial_states()
        current["lifecycle"] = str(self._lifecycle.current)
        return current

    @property
    def _conv(self) -> Conversation | None:
        return self._supervisor.conv

    def diagram(self) -> str:
        """Mermaid diagram of the state machines with the current states highlighted."""
        return diagram(self.state, self.phase)

    def usage(self) -> CallUsage:
        """Token usage by modality and cache, per turn and for the session, with its cost (a snapshot).

        The cost comes from the provider profile's price table (``None`` without one).
        """
        return self._usage.usage()

    def statistics(self) -> SessionStatistics:
        """Counters and queue depths, for monitoring (a snapshot)."""
        return SessionStatistics.of(self._dispatcher, self._supervisor.effects)

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
        body_done = False
        try:
            async with anyio.create_task_group() as tg:
                group = self._group = ActorGroup(tg)
                self._loop_thread, self._call_soon = threading.get_ident(), loop_caller()
                supervisor.start(
                    group,
                    tg.cancel_scope,
                    self.provider.prepare(self._with_tools(self._config)),
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

    async def send_text(self, text: str) -> None:
        """Add a user text message and ask for a response (coalesced if one is in flight).

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
            TypeError: ``text`` is not a ``str`` (a ``UsageTypeError``).
            ValueError: ``text`` holds a lone surrogate (UTF-8 cannot carry it) or is
                larger than ``settings.max_item_bytes`` as an item; nothing is sent.
        """
        conv, effects = self._live()
        if isinstance(text, str):  # the core refuses other types
            check_text(text, "send_text()")
            check_item(Item.user_text(text), self.settings.max_item_bytes, "send_text()")
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(cmd.SendText(text=text)))

    async def send_image(
        self,
        data: bytes | bytearray | memoryview | None = None,
        *,
        mime: str = "image/png",
        url: str | None = None,
        detail: str | None = None,
        text: str | None = None,
    ) -> None:
        """Add a user message with an image (``input_image``), and ``text`` beside it if given.

        No response is asked for: follow with ``send_text()`` or ``create_response()``.

        Raises:
            NotConnected / SessionClosed: as ``send_text()``.
            ConfigError: the provider's profile does not take images (refused locally).
            TypeError / ValueError: bad ``data``/``url``/``mime``/``detail``, or the item is larger
                than ``settings.max_item_bytes``; nothing is sent.
        """
        conv, effects = self._live()
        self.provider.profile.check_feature("image_input", "send_image()")
        item = Item.user_image(image_data_url(data, mime, url), detail=detail, text=text)
        check_item(item, self.settings.max_item_bytes, "send_image()")
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(cmd.AddItem(item=item)))

    async def send_audio(self, pcm: bytes | bytearray | memoryview) -> None:
        """Stream caller audio in the session's input format; any length, any rate of calls.

        A cancel point on every call (a cancelled caller hands nothing over) and a
        schedule point whenever it waits for the audio-in actor (backpressure).
        Its direct path queues a chunk without a task switch: a full checkpoint
        per 20 ms frame would triple its cost (``benchmarks/audio_in.py``), and a
        producer that never waits still yields once the outbox and the actor's
        inbox are full.

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
            TypeError: ``pcm`` is not bytes, bytearray or memoryview (a ``UsageTypeError``).
        """
        _, effects = self._live()
        await anyio.lowlevel.checkpoint_if_cancelled()
        await effects.audio.put(pcm)

    def send_audio_nowait(self, pcm: bytes | bytearray | memoryview) -> None:
        """Stream caller audio without waiting: for a sound library's audio callback.

        May be called from any thread (a sound library's own, too): the audio is
        copied and handed to the event loop without blocking. Overflow policy:
        when the audio-in actor is too far behind to take a chunk, the chunk is
        dropped (the newest audio), counted in ``statistics().audio_chunks_dropped``
        and reported once per overflow as ``Error(code="audio_dropped", source="local")``;
        nothing is raised, since an audio callback can neither wait nor recover.

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
            TypeError: ``pcm`` is not bytes, bytearray or memoryview (a ``UsageTypeError``).
        """
        if not isinstance(pcm, bytes | bytearray | memoryview):
            raise UsageTypeError(
                f"send_audio_nowait() takes bytes, bytearray or memoryview, not {type(pcm).__name__}"
            )
        _, effects = self._live()
        if threading.get_ident() == self._loop_thread:
            effects.audio.put_nowait(pcm)
            return
        assert self._call_soon is not None
        try:
            self._call_soon(self._audio_from_thread, bytes(pcm))
        except RuntimeError:  # the loop is gone (asyncio: closed; trio: RunFinishedError)
            raise self._closed("the session is closed") from None

    def _audio_from_thread(self, pcm: bytes) -> None:
        effects = self._supervisor.effects
        if effects is not None and not self._lifecycle.ending:
            effects.audio.put_nowait(pcm)

    async def commit_audio(self) -> None:
        """End the user's turn by hand (manual turns): flush buffered audio, then commit.

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
        """
        conv, effects = self._live()
        await anyio.lowlevel.checkpoint()
        await effects.audio.flush()
        await effects.apply(conv.handle(cmd.CommitAudio()))

    async def clear_audio(self) -> None:
        """Discard the user's uncommitted audio on the server (and what is not sent yet here).

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
        """
        conv, effects = self._live()
        effects.audio.clear()
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(cmd.ClearAudio()))

    async def create_response(self, params: ResponseParams | None = None) -> None:
        """Ask for a response now (coalesced with one already in flight).

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
            TypeError: ``params`` is not a ``ResponseParams`` (a ``UsageTypeError``).
        """
        conv, effects = self._live()
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(cmd.CreateResponse(params=params)))

    async def cancel_response(self) -> None:
        """Cancel the response in flight (deferred until the server has named it).

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
        """
        conv, effects = self._live()
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(cmd.CancelResponse()))

    async def interrupt(self) -> None:
        """Cut the assistant off as a barge-in would: ``Interrupted``, queued audio dropped, cancel.

        Raises:
            NotConnected: before ``connect()``.
            SessionClosed: the session is closing or closed.
        """
        conv, effects = self._live()
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(cmd.Interrupt()))

    async def update(self, config: SessionConfig) -> ev.ConfigApplied:
        """Send a new configuration; return the server's ``ConfigApplied`` once it applied it.

        Raises:
            NotConnected: before ``connect()``.
            TypeError: ``config`` is not a ``SessionConfig`` (a ``UsageTypeError``).
            ConfigError: a field the provider does not take (refused locally).
            UpdateRejected: the server would refuse it now (nothing is sent), refused it (``param``,
                ``code``), or gave no answer in ``settings.response_timeout`` (``update_timeout``).
            SessionClosed: the session closed before the answer.
        """
        conv, effects = self._live()
        if not isinstance(config, SessionConfig):
            raise UsageTypeError(f"update(): config must be a SessionConfig, got {type(config).__name__}")
        out = conv.handle(cmd.Update(config=self.provider.prepare(self._with_tools(config))))  # raises first
        self._config = config  # session.config is the core's: back to the old one if refused
        return await raw.acknowledged(self._dispatcher, effects, out, conv.pending_updates[-1])

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

    def audio_played(self, item_id: str, ms: float) -> None:
        """Tell the session how much of an assistant item your speaker has played (cumulative ms).

        This is the playback ledger's acknowledgement: call it as audio leaves the
        speaker (or a telephony mark comes back). A barge-in then truncates the item
        to exactly what was heard; without it, playback is estimated from the clock.
        Ignored before ``connect()`` and once the session is closing (a speaker may finish after it).

        Raises:
            TypeError: ``item_id`` is not a ``str`` or ``ms`` not a number (a ``UsageTypeError``).
            ValueError: ``ms`` is negative or not finite (a ``UsageValueError``).
        """
        if in_callback_thread():  # a sync callback moved to a worker thread: the core is the loop's
            anyio.from_thread.run_sync(self.audio_played, item_id, ms)
            return
        conv = self._supervisor.conv
        if conv is not None and not self._lifecycle.ending:  # once closing, the core is closed: moot
            conv.handle(cmd.AudioPlayed(item_id=item_id, ms=ms))
            if self._supervisor.effects is not None:  # a call policy's goodbye may be over
                self._supervisor.effects.on_played(item_id, ms)

    def pause_audio_input(self, paused: bool) -> None:
        """While paused, audio given to ``send_audio`` is discarded."""
        if in_callback_thread():
            anyio.from_thread.run_sync(self.pause_audio_input, paused)
            return
        self._paused = paused
        effects = self._supervisor.effects
        if effects is not None:
            effects.audio.paused = paused

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

    def events(self, *types: type) -> EventStream:
        """An async iterator of the same events as the callbacks (from now on); ends at close.

        Close it with ``aclose()`` or ``async with`` when done early; one left with
        ``break`` and no longer referenced is released when it is collected.
        """
        self._ask_raw(types)
        return self._dispatcher.stream(types or None)

    # ------------------------------------------------------------------ plumbing

    def _closed(self, message: str) -> SessionClosed:
        """``SessionClosed`` saying why the session ended, with the fatal ``Error`` if one ended it."""
        why = self._supervisor.why()
        text = message if why == "closed" else f"{message}: {why}"
        return SessionClosed(text, reason=why, error=self._supervisor.fatal)

    def _live(self) -> tuple[Conversation, Interpreter]:
        supervisor = self._supervisor
        conv, effects = supervisor.conv, supervisor.effects
        if self._lifecycle.current is Lifecycle.NEW:
            raise NotConnected("the session is not connected yet: use `async with session.connect()`")
        if conv is None or effects is None or self._lifecycle.ending:
            raise self._closed("the session is closed")
        return conv, effects

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


def _initial_states() -> dict[str, str]:
    """Every core machine's initial state, by name (before the first connect)."""
    return {name: str(spec.initial) for name, spec in CORE_MACHINES.items()}
