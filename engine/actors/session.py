"""The public ``Session``: the actors around the pure core, under one task group.

Actors (one concern and one resource each, talking over bounded streams):

* **reader**: receives frames, decodes them, feeds the core, applies effects;
* **writer**: the only task that writes to the socket (:mod:`engine.actors.outbox`);
* **audio-in**: chunks and encodes caller audio (:mod:`engine.actors.audio_in`);
* **tool runner**: one task per call (:mod:`engine.actors.tool_runner`);
* **dispatcher**: one task per callback (:mod:`engine.actors.dispatch`);
* **timers**: the core's deadlines (:mod:`engine.actors.timers`).

The core is synchronous, so any task may feed it; effects are applied by the
task that produced them, and the outbox's fair lock keeps their order on the
wire. ``connect()`` returns once the session is ready; leaving it (or
``close()``) ends everything within ``close_timeout``, even when the server
never answers the close handshake, and wakes every waiter.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio
import anyio.abc
import attrs
import sniffio

from engine.actors.audio_in import AudioIn
from engine.actors.dispatch import Callback, Dispatcher, EventStream, in_callback_thread
from engine.actors.group import ActorGroup
from engine.actors.outbox import Outbox, run_writer
from engine.actors.settings import SessionSettings
from engine.actors.timers import Timers
from engine.actors.tool_runner import ToolRunner, error_output
from engine.core import effects as fx
from engine.core import events as ev
from engine.core.conversation import Conversation
from engine.core.diagram import diagram
from engine.core.states import Phase, State
from engine.errors import ConnectionClosed, EngineError, ProtocolError, SessionClosed, TransportError, leaves
from engine.protocol.client import ResponseParams
from engine.protocol.codec import RepairedMessage, decode, encode
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item
from engine.protocol.text import check_item, check_text
from engine.providers import Provider
from engine.record import Recorder, RecordingConversation
from engine.redaction import redact
from engine.tools import Tool
from engine.transports.base import Connector, Transport
from engine.transports.urls import redact_url

log = logging.getLogger(__name__)

ROLLOVER_TIMER = "session_rollover"
ROLL_OVER_CODES = frozenset({"session_expired"})
"""Server error codes that end the server's session, not the call: the session reconnects and restores."""
_STREAMED = frozenset({ev.AudioOut, ev.AssistantTranscript, ev.AssistantText, ev.UserTranscript})

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
        self._connector = connector
        self._record = (Path(record), record_audio) if record is not None else None
        self._recorder: Recorder | None = None
        self._tools: dict[str, Tool] = {}
        self._callbacks: list[tuple[tuple[type, ...] | None, Callback]] = []
        self._dispatcher = Dispatcher(
            event_buffer=self.settings.event_buffer,
            slow_callback_threshold=self.settings.slow_callback_threshold,
        )
        self._conv: Conversation | None = None
        self._tg: ActorGroup | None = None
        self._body_scope: anyio.CancelScope | None = None
        self._transport: Transport | None = None
        self._outbox: Outbox | None = None
        self._audio: AudioIn | None = None
        self._timers: Timers | None = None
        self._runner: ToolRunner | None = None
        self._ready = anyio.Event()
        self._closed = anyio.Event()
        self._closing = False
        self._fatal: ev.Error | None = None
        self._paused = False
        self._failure: BaseException | None = None
        self._drop_reason: BaseException | None = None
        self._ready_on_socket = False
        self._rollover = False
        self._rollover_due = False
        self._attempt = 0
        self._ready_at: float | None = None  # when the current socket became ready
        self._ready_scope: anyio.CancelScope | None = None  # the ready deadline of a reconnect socket
        self._sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self._random: Callable[[], float] = random.random

    def __repr__(self) -> str:
        return f"<Session provider={self.provider.name} state={self.state.value}>"

    # ------------------------------------------------------------------ registration

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        timeout: float = 30.0,
        cancel_on_interrupt: bool = True,
    ) -> Any:
        """Register a function as a tool; its schema comes from its signature and docstring."""

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
            self._callbacks.append((kinds, callback))
            if self._tg is not None:
                self._dispatcher.add_callback(self._tg, kinds, callback)
            return callback

        return register

    # ------------------------------------------------------------------ inspection

    @property
    def state(self) -> State:
        """Whose turn it is (``State.CONNECTING`` before the first connect)."""
        return self._conv.state if self._conv is not None else State.CONNECTING

    @property
    def phase(self) -> Phase:
        """Where the response slot stands."""
        return self._conv.phase if self._conv is not None else Phase.IDLE

    @property
    def history(self) -> tuple[Item, ...]:
        """The locally mirrored conversation items, in order."""
        return self._conv.history.items() if self._conv is not None else self._initial

    @property
    def config(self) -> SessionConfig:
        """The configuration as last sent (with provider defaults and registered tools)."""
        return self._conv.config if self._conv is not None else self._config

    def diagram(self) -> str:
        """Mermaid diagram of the state machines with the current states highlighted."""
        return diagram(self.state, self.phase)

    def statistics(self) -> dict[str, int]:
        """Counters and queue depths, for monitoring."""
        return {
            "outbox_queued": self._outbox.statistics() if self._outbox else 0,
            "messages_sent": self._outbox.sent if self._outbox else 0,
            "audio_chunks_sent": self._audio.chunks_sent if self._audio else 0,
            "audio_chunks_dropped": self._audio.dropped_chunks if self._audio else 0,
            "events_delivered": self._dispatcher.delivered,
            "events_dropped": self._dispatcher.dropped,
            "event_subscribers": self._dispatcher.subscriber_count(),
            "slow_callbacks": self._dispatcher.slow_callbacks,
            "tools_running": len(self._runner.running()) if self._runner else 0,
        }

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Session]:
        """Open the session; the body runs once it is ready. Leaving it closes the session.

        A dropped socket is reconnected and the conversation restored
        (``Reconnecting`` / ``Reconnected`` events) without leaving the body.

        Raises:
            HandshakeError: the server refused the connection (401/403: bad credentials).
            TransportError: the socket could not be opened (after the retries of ``settings.reconnect``).
            SessionClosed: the session ended under the body (a fatal error; ``Closed`` says which).
            TimeoutError: not ready within ``settings.ready_timeout``.
        """
        if self._tg is not None or self._closing:
            raise EngineError("a session connects once; create a new Session to connect again")
        body_done = False
        try:
            async with anyio.create_task_group() as tg:
                self._body_scope = tg.cancel_scope
                self._tg = ActorGroup(tg)
                self._start(self._tg)
                try:
                    with anyio.fail_after(self.settings.ready_timeout):
                        await self._ready.wait()
                    if self._closing:
                        raise self._failure or SessionClosed(
                            f"the session closed before it was ready: {self._why()}"
                        )
                    yield self
                    body_done = True
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._shutdown("closed by the application")
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:
            self._tg = None
        if not body_done:
            # The session ended under the body; say why instead of returning quietly.
            if self._failure is not None:
                raise self._failure
            raise SessionClosed(f"the session ended: {self._why()}")

    def _why(self) -> str:
        return f"{self._fatal.code}: {self._fatal.message}" if self._fatal else "closed"

    def _start(self, tg: ActorGroup) -> None:
        config = self.provider.prepare(self._with_tools(self._config))
        options = attrs.evolve(
            self.provider.core_options(),
            response_created_timeout=self.settings.response_timeout,
            stall_timeout=self.settings.stall_timeout,
            cancel_timeout=self.settings.cancel_timeout,
            max_history_items=self.settings.max_history_items,
        )
        clock = _loop_clock()
        self._conv = Conversation(config, clock=clock, history=self._initial, options=options)
        if self._record is not None:
            self._recorder = Recorder(self._record[0], audio=self._record[1])
            proxy = RecordingConversation(
                self._conv,
                self._recorder,
                clock,
                provider=self.provider.name,
                url=redact_url(self.provider.endpoint()[0]),
            )
            self._conv = cast(Conversation, proxy)
        self._audio = AudioIn(
            config.input_format,
            None,
            report_drop=self._report_audio_drop,
            report_misaligned=self._report_audio_misaligned,
            chunk_ms=self.settings.audio_chunk_ms,
            hold_limit_ms=self.settings.hold_limit_ms,
            hold_policy=self.settings.hold_policy,
        )
        self._audio.paused = self._paused
        self._timers = Timers(tg, self._on_timer, clock)
        self._runner = ToolRunner(
            tg,
            self._tools,
            self._on_tool_answer,
            max_output_bytes=self.settings.max_item_bytes,
            report=self._dispatcher.publish,
        )
        for kinds, callback in self._callbacks:
            self._dispatcher.add_callback(tg, kinds, callback)
        self._audio.start_in(tg)
        tg.start_soon(self._connection_loop, name="connection")

    def _open_transport(self) -> Any:
        url, headers = self.provider.endpoint()
        if self._connector is not None:
            return self._connector(url, headers, self.settings.transport)
        from engine.transports import connect

        return connect(url, headers, self.settings.transport)

    async def _connection_loop(self) -> None:
        """Open sockets until the session closes: connect, run, and on a drop back off and restore.

        ``attempt`` counts the current failure run: only a socket that stayed ready
        for the policy's ``healthy_after`` ends it, so a server that drops every
        session right after it is ready backs off and is given up on like one that
        refuses to connect. A planned rollover is not a failure.
        """
        policy = self.settings.reconnect
        attempt = 0
        ready_drops = 0  # sockets of this run that reached ready, then died within healthy_after
        while not self._closing:
            error: BaseException | None = None
            planned = False
            self._ready_on_socket = False
            self._ready_at = None
            try:
                async with self._open_transport() as transport:
                    planned = await self._run_socket(transport)
            except (TransportError, ValueError) as exc:
                error = exc
            if self._closing:
                return
            error = error or self._drop_reason
            uptime = None if self._ready_at is None else anyio.current_time() - self._ready_at
            if planned:
                attempt, ready_drops = 1, 0
            else:
                healthy = uptime is not None and uptime >= policy.healthy_after
                attempt = policy.next_attempt(attempt, uptime)
                ready_drops = 0 if healthy else ready_drops + (uptime is not None)
            assert self._conv is not None
            await self._apply(self._conv.connection_lost())
            if not planned and self._ends_session(error):
                await self._shutdown(f"the server closed the session: {error}", abort=True)
                return
            delay = 0.0
            if not planned:
                decision = policy.decide(attempt, error, self._random(), ready_drops=ready_drops)
                if decision.delay is None:
                    await self._fail(decision.reason, error)
                    return
                delay = decision.delay
            self._dispatcher.publish(ev.Reconnecting(attempt=attempt, delay=delay))
            log.info("reconnecting (attempt %d) in %.2fs", attempt, delay)
            self._attempt = attempt
            await self._sleep(delay)

    def _ends_session(self, error: BaseException | None) -> bool:
        """True when the server closed cleanly and the provider's profile says that ends the session."""
        return (
            isinstance(error, ConnectionClosed)
            and error.clean
            and not self.provider.profile.server_close_reconnects
        )

    async def _run_socket(self, transport: Transport) -> bool:
        """Serve one socket until it drops; True if we closed it on purpose (rollover).

        A socket opened to reconnect must become ready within ``ready_timeout``
        (the first one is bounded by ``connect()`` itself); one that does not is
        dropped and counts as a failed attempt, so a server that accepts sockets
        but never answers cannot hold the session in ``reconnecting``.
        """
        assert self._audio is not None and self._conv is not None
        self._transport = transport
        self._ready_on_socket = False
        self._rollover = False
        outbox = self._outbox = Outbox(self.settings.outbox_size)  # nothing for a dead socket survives
        self._audio.outbox = outbox
        timeout = self.settings.ready_timeout
        deadline = anyio.current_time() + timeout if self._ready.is_set() else math.inf
        try:
            async with anyio.create_task_group() as socket_tg:
                socket_tg.start_soon(run_writer, outbox, transport, name="socket writer")
                with anyio.CancelScope(deadline=deadline) as scope:
                    self._ready_scope = scope
                    await self._apply(self._conv.connection_opened())
                    await self._read_loop(transport)
                self._ready_scope = None
                if scope.cancelled_caught:
                    log.warning("the new socket was not ready within %ss: dropping it", timeout)
                    self._drop_reason = TransportError(
                        f"the server did not make the session ready within {timeout:g}s"
                    )
                socket_tg.cancel_scope.cancel()
        finally:
            outbox.close_all()
        return self._rollover

    async def _fail(self, reason: str, error: BaseException | None) -> None:
        reason = redact(reason)
        log.error("giving up the session: %s", reason)
        self._fatal = ev.Error(code="connection_failed", message=reason, fatal=True, source="server")
        self._dispatcher.publish(self._fatal)
        if error is not None and not self._ready.is_set():
            self._failure = error  # connect() raises the original error (e.g. HandshakeError 401)
        await self._shutdown(reason, abort=True)

    async def _expire(self, code: str) -> None:
        """The server says the session is over (``session_expired``): drop the socket and restore.

        Not a planned rollover: it counts toward the failure run, so a server that
        expires every session at once is given up on, not reconnected forever.
        """
        if self._transport is not None and not self._closing:
            await self._transport.aclose(1000, code)

    async def _abort(self, reason: str) -> None:
        await self._shutdown(reason, abort=True)

    async def close(self) -> None:
        """Close the session (idempotent); returns within ``settings.close_timeout``.

        Called inside ``async with session.connect()``, the body goes on (commands
        then raise ``SessionClosed``) and leaving the block is quiet.
        """
        await self._shutdown("closed by the application")

    async def reset(self) -> None:
        """Start a fresh server conversation on a new socket, restoring the mirrored history."""
        self._live()
        await self._roll_over()
        await self.wait_for(ev.Reconnected, timeout=self.settings.ready_timeout)

    async def _roll_over(self) -> None:
        if self._transport is not None and not self._closing:
            self._rollover = True
            await self._transport.aclose(1000, "rollover")

    async def _shutdown(self, reason: str, *, abort: bool = False) -> None:
        """Close everything within ``close_timeout``; ``abort`` also cancels the caller's body (fatal)."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        reason = redact(reason)
        # Bounded by close_timeout; a caller that gives up on close() must not leave it half done
        # (every later close() and the exit of connect() wait for _closed).
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.settings.close_timeout) as deadline:
                if self._conv is not None:
                    await self._apply(self._conv.close(), sending=False)
                self._dispatcher.publish(ev.Closed(reason=reason, error=self._fatal))
                for closer in (self._audio, self._runner):
                    if closer is not None:
                        closer.close()
                if self._outbox is not None:
                    self._outbox.close()
                self._dispatcher.close()
                if self._transport is not None:
                    await self._transport.aclose(1000, reason[:100])
                await self._dispatcher.drain()
            if deadline.cancelled_caught:
                log.warning(
                    "close took longer than %ss; cancelling what is left", self.settings.close_timeout
                )
            if self._recorder is not None:
                self._recorder.close()
            self._closed.set()
            self._ready.set()  # wake connect() if it was still waiting
            if self._tg is not None:
                self._tg.cancel()
            if abort and self._body_scope is not None:
                self._body_scope.cancel()

    # ------------------------------------------------------------------ commands

    async def send_text(self, text: str) -> None:
        """Add a user text message and ask for a response (coalesced if one is in flight).

        Raises:
            TypeError: ``text`` is not a ``str``.
            ValueError: ``text`` holds a lone surrogate (UTF-8 cannot carry it) or is
                larger than ``settings.max_item_bytes`` as an item; nothing is sent.
        """
        conv = self._live()
        if isinstance(text, str):  # the core refuses other types
            check_text(text, "send_text()")
            check_item(Item.user_text(text), self.settings.max_item_bytes, "send_text()")
        await self._apply(conv.send_text(text))

    async def send_audio(self, pcm: bytes | bytearray | memoryview) -> None:
        """Stream caller audio in the session's input format; any length, any rate of calls.

        Raises:
            TypeError: ``pcm`` is not bytes, bytearray or memoryview.
        """
        self._live()
        assert self._audio is not None
        await self._audio.put(pcm)

    async def commit_audio(self) -> None:
        """End the user's turn by hand (manual turns): flush buffered audio, then commit."""
        conv = self._live()
        assert self._audio is not None
        await self._audio.flush()
        await self._apply(conv.commit_audio())

    async def clear_audio(self) -> None:
        """Discard the user's uncommitted audio on the server (and what is not sent yet here)."""
        conv = self._live()
        if self._audio is not None:
            self._audio.clear()
        await self._apply(conv.clear_audio())

    async def create_response(self, params: ResponseParams | None = None) -> None:
        """Ask for a response now (coalesced with one already in flight)."""
        await self._apply(self._live().create_response(params))

    async def cancel_response(self) -> None:
        """Cancel the response in flight (deferred until the server has named it)."""
        await self._apply(self._live().cancel_response())

    async def interrupt(self) -> None:
        """Cut the assistant off as a barge-in would: ``Interrupted``, queued audio dropped, cancel."""
        await self._apply(self._live().interrupt())

    async def update(self, config: SessionConfig) -> None:
        """Send a new configuration. Raises ``UpdateRejected`` if the server would refuse it now."""
        conv = self._live()
        if not isinstance(config, SessionConfig):
            raise TypeError(f"update(): config must be a SessionConfig, got {type(config).__name__}")
        effects = conv.update(self.provider.prepare(self._with_tools(config)))  # raises before any change
        self._config = config
        await self._apply(effects)

    def audio_played(self, item_id: str, ms: float) -> None:
        """Tell the session how much of an assistant item your speaker has played (cumulative ms).

        This is the playback ledger's acknowledgement: call it as audio leaves the
        speaker (or a telephony mark comes back). A barge-in then truncates the item
        to exactly what was heard; without it, playback is estimated from the clock.
        """
        if in_callback_thread():  # a sync callback moved to a worker thread: the core is the loop's
            anyio.from_thread.run_sync(self.audio_played, item_id, ms)
            return
        if self._conv is not None:
            self._conv.audio_played(item_id, ms)

    def pause_audio_input(self, paused: bool) -> None:
        """While paused, audio given to ``send_audio`` is discarded."""
        if in_callback_thread():
            anyio.from_thread.run_sync(self.pause_audio_input, paused)
            return
        self._paused = paused
        if self._audio is not None:
            self._audio.paused = paused

    async def wait_for(self, kind: type[E], timeout: float | None = None) -> E:  # noqa: ASYNC109 (public API)
        """The next event of ``kind``. Raises ``TimeoutError`` or ``SessionClosed``."""
        try:
            result: E = await self._dispatcher.wait_for(kind, timeout)
        except EOFError:
            raise SessionClosed("the session closed before the event arrived") from None
        return result

    def events(self, *types: type) -> EventStream:
        """An async iterator of the same events as the callbacks (from now on); ends at close.

        Close it with ``aclose()`` or ``async with`` when done early; one left with
        ``break`` and no longer referenced is released when it is collected.
        """
        return self._dispatcher.stream(types or None)

    # ------------------------------------------------------------------ plumbing

    def _live(self) -> Conversation:
        if self._conv is None or self._closing:
            raise SessionClosed("the session is not connected")
        return self._conv

    def _with_tools(self, config: SessionConfig) -> SessionConfig:
        if not self._tools:
            return config
        own = {t.name for t in config.tools}
        extra = tuple(t.schema for t in self._tools.values() if t.name not in own)
        return attrs.evolve(config, tools=config.tools + extra)

    async def _read_loop(self, transport: Transport) -> None:
        conv = self._conv
        assert conv is not None
        self._drop_reason = None
        # Bound once: this loop runs for every server message.
        receive, feed, publish, emit = transport.receive, conv.receive, self._dispatcher.publish, fx.Emit
        while True:
            try:
                text = await receive()
            except ProtocolError as exc:  # a frame that is not text (BinaryFrameError): report, read on
                await self._apply(conv.protocol_error(str(exc), exc.code))
                continue
            except (ConnectionClosed, TransportError) as exc:
                if not self._closing and not self._rollover:
                    log.warning("socket lost: %s", exc)
                self._drop_reason = exc
                return
            try:
                event = decode(text)
            except RepairedMessage as exc:  # text UTF-8 cannot carry was replaced: report, then go on
                effects = conv.protocol_error(str(exc), exc.code) + feed(exc.event)
            except ProtocolError as exc:
                effects = conv.protocol_error(str(exc))
            else:
                effects = feed(event)
            if not effects:
                continue
            if len(effects) == 1 and type(first := effects[0]) is emit and type(first.event) in _STREAMED:
                # The bulk of the traffic (audio and transcript deltas): publish without a coroutine.
                publish(first.event)
            else:
                await self._apply(effects)
            # Drop the last message before waiting: an idle session must not hold it (memory).
            text = event = effects = first = None  # type: ignore[assignment]

    async def _apply(self, effects: list[fx.Effect], *, sending: bool = True) -> None:
        for effect in effects:
            if isinstance(effect, fx.Emit):
                event = effect.event
                if type(event) is ev.Error:  # its message may echo what a peer sent: the key, too
                    event = _redacted(event)
                    if event.code in ROLL_OVER_CODES and not event.fatal and self._tg is not None:
                        self._tg.start_soon(self._expire, event.code)
                self._dispatcher.publish(event)
                if isinstance(event, ev.SessionReady):
                    self._on_ready()
                elif isinstance(event, ev.Error) and event.fatal and self._fatal is None:
                    self._fatal = event
                    if self._tg is not None:
                        self._tg.start_soon(self._abort, f"fatal error: {event.code}")
            elif isinstance(effect, fx.Send):
                if sending and self._outbox is not None:
                    try:
                        await self._outbox.send(encode(effect.event))
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        log.debug("dropped a client event: the session is closing")
            else:
                await self._apply_other(effect)
        if self._rollover_due:
            await self._maybe_roll_over()

    def _on_ready(self) -> None:
        self._ready_on_socket = True
        self._ready_at = anyio.current_time()
        if self._ready_scope is not None:
            self._ready_scope.deadline = math.inf  # the socket made it: no ready deadline any more
        if self._ready.is_set():
            self._dispatcher.publish(ev.Reconnected(attempt=self._attempt))
        self._ready.set()
        if self.settings.max_session_duration is not None and self._timers is not None:
            self._timers.arm(ROLLOVER_TIMER, self.settings.max_session_duration)

    async def _apply_other(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.StartTool):
            assert self._runner is not None
            if not self._runner.start(effect):
                await self._on_tool_answer(effect.call_id, error_output("too many tool calls at once"), True)
        elif isinstance(effect, fx.CancelTools):
            if self._runner is not None:
                self._runner.cancel(effect.call_ids, effect.reason)
        elif isinstance(effect, fx.ArmTimer):
            if self._timers is not None:
                self._timers.arm(effect.name, effect.delay)
        elif isinstance(effect, fx.CancelTimer):
            if self._timers is not None:
                self._timers.cancel(effect.name)
        elif isinstance(effect, fx.GateAudio):
            if self._audio is not None:
                await self._audio.set_gate(effect.open)
        elif isinstance(effect, fx.DropAudioOut):
            self._dispatcher.drop_response(effect.response_id)

    async def _on_tool_answer(self, call_id: str, output: str, is_error: bool) -> None:
        if self._conv is not None and not self._closing:
            await self._apply(self._conv.tool_result(call_id, output, is_error=is_error))

    async def _on_timer(self, name: str) -> None:
        if self._conv is None or self._closing:
            return
        if name == ROLLOVER_TIMER:
            self._rollover_due = True
            await self._maybe_roll_over()
            return
        await self._apply(self._conv.timer_fired(name))

    async def _maybe_roll_over(self) -> None:
        """Roll over only between turns, so no speech or tool work is cut."""
        conv = self._conv
        if (
            self._rollover_due
            and conv is not None
            and conv.state is State.SESSION_READY
            and conv.phase is Phase.IDLE
            and not conv.calls.open()
        ):
            self._rollover_due = False
            log.info("rolling the session over to a new socket (max_session_duration)")
            await self._roll_over()

    def _report_audio_misaligned(self, dropped: int, where: str) -> None:
        fmt = self.config.input_format
        self._dispatcher.publish(
            ev.Error(
                code="audio_misaligned",
                message=f"caller audio ended on an incomplete sample at {where}: {dropped} byte(s) dropped "
                f"({fmt.type} samples are {2 if fmt.type == 'audio/pcm' else 1} bytes)",
                source="local",
            )
        )

    def _report_audio_drop(self, in_episode: int) -> None:
        if in_episode == 1:  # report the first drop of each hold (each outage)
            self._dispatcher.publish(
                ev.Error(
                    code="audio_dropped",
                    message=f"caller audio held beyond {self.settings.hold_limit_ms} ms was dropped "
                    f"({self.settings.hold_policy})",
                    source="local",
                )
            )


def _loop_clock() -> Callable[[], float]:
    """The running loop's monotonic clock, looked up once (``anyio.current_time`` asks sniffio each call)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    import asyncio

    return asyncio.get_running_loop().time


def to_item(entry: Item | Mapping[str, Any]) -> Item:
    """An initial-history entry as an item (chat-style dicts are accepted)."""
    if isinstance(entry, Item):
        return entry
    kind = entry.get("type")
    if kind == "function_call":
        return Item.function_call(
            str(entry["call_id"]), str(entry["name"]), str(entry.get("arguments", "{}"))
        )
    if kind == "function_call_output":
        return Item.function_call_output(str(entry["call_id"]), str(entry["output"]))
    role, content = entry.get("role"), entry.get("content")
    if not isinstance(content, str):
        raise TypeError(f"history entry needs a string 'content': {dict(entry)!r}")
    makers = {"user": Item.user_text, "assistant": Item.assistant_text, "system": Item.system_text}
    if role not in makers:
        raise ValueError(f"history entry role must be user, assistant or system, got {role!r}")
    return makers[role](content)


def _redacted(event: ev.Error) -> ev.Error:
    message = redact(event.message)
    return event if message == event.message else attrs.evolve(event, message=message)


def _unwrap(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one exception worth raising out of a task group's group."""
    found = leaves(group)
    cancel = anyio.get_cancelled_exc_class()
    real = [e for e in found if not isinstance(e, cancel)]
    return (real or found)[0]
