"""The connection supervisor: opens sockets, runs them, and closes the session.

It drives the session's :class:`~engine.core.lifecycle.LifecycleMachine`
(``connecting``, ``open``, ``rollover_due``, ``rolling_over``,
``reconnecting``, ``closing``, ``closed``) and performs what each state needs:

* **run a socket**: a writer task (the only one writing to it) and the
  reader (:mod:`engine.actors.reader`), which feeds the core every frame;
* **drop, back off, restore**: a lost socket is reported (``Reconnecting``),
  the reconnect policy decides the delay or gives up, and the core restores
  the conversation on the next socket (``Reconnected``);
* **roll over**: a due rollover waits for a turn boundary, then the socket is
  closed on purpose and replaced without backoff;
* **close**: within ``close_timeout`` whatever happens, waking every waiter.

What stays in fields is data: the attempt counter, when the socket became
ready, the last drop's error, the fatal ``Error`` and the exception
``connect()`` raises.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import attrs

from engine.actors.dispatch import Dispatcher
from engine.actors.effects import ROLLOVER_TIMER, Interpreter
from engine.actors.group import ActorGroup
from engine.actors.loop import loop_clock
from engine.actors.outbox import Outbox, run_writer
from engine.actors.reader import read_socket
from engine.actors.settings import SessionSettings
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.conversation import Conversation
from engine.core.lifecycle import (
    ANNOUNCE_RECONNECTED,
    ARM_ROLLOVER,
    CLOSE_SOCKET,
    Lifecycle,
    LifecycleMachine,
)
from engine.core.policy import CallPolicies
from engine.core.states import Phase, State
from engine.errors import (
    ConnectionClosed,
    ErrorCode,
    ErrorSource,
    HandshakeError,
    SessionClosed,
    TransportError,
)
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item
from engine.providers import Provider, dial, endpoint_url
from engine.record import Recorder
from engine.record import record as record_core
from engine.redaction import redact
from engine.tools import Tool
from engine.transports.base import Connector, Transport
from engine.transports.urls import redact_url

log = logging.getLogger(__name__)

POLICY_END = "call ended by policy: "
"""How ``Closed.reason`` starts when a call policy ended the call (a normal end, no error)."""

_CONNECTING, _ROLLOVER_DUE, _ROLLING_OVER, _RECONNECTING = (
    Lifecycle.CONNECTING.value,
    Lifecycle.ROLLOVER_DUE.value,
    Lifecycle.ROLLING_OVER.value,
    Lifecycle.RECONNECTING.value,
)


class Supervisor:
    """The connection's life for one session, driven by the ``Session`` facade."""

    def __init__(
        self,
        provider: Provider,
        settings: SessionSettings,
        dispatcher: Dispatcher,
        lifecycle: LifecycleMachine,
        connector: Connector | None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.lifecycle = lifecycle
        self._dispatcher = dispatcher
        self._connector = connector
        self.conv: Conversation | None = None
        self.step_hook: Callable[[str, str, str], None] | None = None  # Session.watch_steps
        self.effects: Interpreter | None = None
        self._group: ActorGroup | None = None
        self._body: anyio.CancelScope | None = None  # the caller's body, cancelled by a fatal end
        self._recorder: Recorder | None = None
        self._transport: Transport | None = None
        self._ready_scope: anyio.CancelScope | None = None  # the ready deadline of a reconnect socket
        self._opened = anyio.Event()  # wakes connect(): the first socket is ready, or the session ended
        self._closed = anyio.Event()  # wakes every close() once everything has stopped
        # Data, not state:
        self.fatal: ev.Error | None = None  # the error that ended the session
        self.failure: BaseException | None = None  # what connect() raises when the first connect failed
        self._drop_reason: BaseException | None = None  # why the current socket ended
        self._attempt = 0  # the reconnect attempt of the socket being opened
        self._ready_at: float | None = None  # when the current socket became ready
        self._sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self._random: Callable[[], float] = random.random

    # ------------------------------------------------------------------ starting

    def start(
        self,
        group: ActorGroup,
        body: anyio.CancelScope,
        config: SessionConfig,
        *,
        history: tuple[Item, ...],
        tools: Mapping[str, Tool],
        record: tuple[Path, bool] | None,
        paused: bool,
    ) -> None:
        """Build the core and the actors in ``group`` and start the connection loop."""
        self._step_now("start")
        self._group, self._body = group, body
        settings = self.settings
        options = attrs.evolve(
            self.provider.core_options(),
            response_created_timeout=settings.response_timeout,
            stall_timeout=settings.stall_timeout,
            cancel_timeout=settings.cancel_timeout,
            max_history_items=settings.max_history_items,
        )
        clock = loop_clock()
        conv = Conversation(config, clock=clock, history=history, options=options)
        if record is not None:
            self._recorder = Recorder(record[0], audio=record[1])
            url = redact_url(endpoint_url(self.provider))
            record_core(conv, self._recorder, clock, provider=self.provider.name, url=url)
        conv.on_step = self.step_hook
        self.conv = conv
        self.lifecycle.guard_with(self._between_turns)
        self.effects = Interpreter(
            conv,
            self,
            group=group,
            dispatcher=self._dispatcher,
            settings=settings,
            tools=tools,
            input_format=config.input_format,
            clock=clock,
        )
        self.effects.audio.paused = paused
        if settings.call_policy is not None:
            self.effects.policies = CallPolicies(settings.call_policy, clock)
        group.start_soon(self._connection_loop, name="connection")

    async def wait_started(self) -> None:
        """Return once the first socket is ready; raise if the session ended before."""
        await self._opened.wait()
        if self.lifecycle.ending:
            raise self.failure or SessionClosed(
                f"the session closed before it was ready: {self.why()}", reason=self.why(), error=self.fatal
            )

    def why(self) -> str:
        """Why the session ended, in a few words."""
        return f"{self.fatal.code}: {self.fatal.message}" if self.fatal else "closed"

    # ------------------------------------------------------------------ the connection loop

    async def _open_transport(self) -> Any:
        """Dial: the key callable, if any, is called now, so every socket gets a fresh credential."""
        url, headers = await dial(self.provider)
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
        lifecycle, effects, conv = self.lifecycle, self.effects, self.conv
        assert effects is not None and conv is not None
        attempt = 0
        ready_drops = 0  # sockets of this run that reached ready, then died within healthy_after
        refreshed = False  # this failure run already redialled at once after a 401
        while not lifecycle.ending:
            error: BaseException | None = None
            self._ready_at = None
            try:
                async with await self._open_transport() as transport:
                    await self._run_socket(transport)
            except (TransportError, ValueError) as exc:
                error = exc
            if lifecycle.ending:
                return
            planned = lifecycle.state == _ROLLING_OVER
            self._step_now("dropped")
            error = error or self._drop_reason
            uptime = None if self._ready_at is None else anyio.current_time() - self._ready_at
            if planned:
                attempt, ready_drops = 1, 0
            else:
                healthy = uptime is not None and uptime >= policy.healthy_after
                attempt = policy.next_attempt(attempt, uptime)
                ready_drops = 0 if healthy else ready_drops + (uptime is not None)
            await effects.apply(conv.handle(cmd.ConnectionLost()))
            if not planned and self._ends_session(error):
                await self.shutdown(f"the server closed the session: {error}", abort=True)
                return
            delay = 0.0
            if uptime is not None:
                refreshed = False
            if not planned and not refreshed and self._refreshable(error):
                refreshed = True  # an expired token: call the key callable again, once, at once
                log.warning("the server refused the credentials (HTTP 401): dialling with a fresh key")
            elif not planned:
                decision = policy.decide(attempt, error, self._random(), ready_drops=ready_drops)
                if decision.delay is None:
                    await self._fail(decision.reason, error)
                    return
                delay = decision.delay
            self._dispatcher.publish(ev.Reconnecting(attempt=attempt, delay=delay, planned=planned))
            log.info("reconnecting (attempt %d) in %.2fs", attempt, delay)
            self._attempt = attempt
            await self._sleep(delay)

    def _refreshable(self, error: BaseException | None) -> bool:
        """A 401 with a key callable: a fresh key may help (once; then the 401 is fatal)."""
        source = getattr(self.provider, "api_key", None)
        return isinstance(error, HandshakeError) and error.status == 401 and callable(source)

    def _ends_session(self, error: BaseException | None) -> bool:
        """True when the server closed cleanly and the provider's profile says that ends the session."""
        return (
            isinstance(error, ConnectionClosed)
            and error.clean
            and not self.provider.profile.server_close_reconnects
        )

    async def _run_socket(self, transport: Transport) -> None:
        """Serve one socket until it drops.

        A socket opened to reconnect must become ready within ``ready_timeout``
        (the first one is bounded by ``connect()`` itself); one that does not is
        dropped and counts as a failed attempt, so a server that accepts sockets
        but never answers cannot hold the session in ``reconnecting``.
        """
        effects, conv = self.effects, self.conv
        assert effects is not None and conv is not None
        self._transport = transport
        outbox = effects.outbox = Outbox(self.settings.outbox_size)  # nothing for a dead socket survives
        effects.audio.outbox = outbox
        timeout = self.settings.ready_timeout
        deadline = anyio.current_time() + timeout if self.lifecycle.state == _RECONNECTING else math.inf
        try:
            async with anyio.create_task_group() as socket_tg:
                socket_tg.start_soon(run_writer, outbox, transport, name="socket writer")
                with anyio.CancelScope(deadline=deadline) as scope:
                    self._ready_scope = scope
                    await effects.apply(conv.handle(cmd.ConnectionOpened()))
                    self._drop_reason = None
                    reason = await read_socket(transport, conv, effects, self._dispatcher.publish)
                    if not self.lifecycle.ending and self.lifecycle.state != _ROLLING_OVER:
                        log.warning("socket lost: %s", reason)
                    self._drop_reason = reason
                self._ready_scope = None
                if scope.cancelled_caught:
                    log.warning("the new socket was not ready within %ss: dropping it", timeout)
                    self._drop_reason = TransportError(
                        f"the server did not make the session ready within {timeout:g}s"
                    )
                socket_tg.cancel_scope.cancel()
        finally:
            outbox.close_all()

    # ------------------------------------------------------------------ hooks (from the interpreter)

    @property
    def ending(self) -> bool:
        """The session is closing or closed."""
        return self.lifecycle.ending

    @property
    def lifecycle_state(self) -> str:
        """The lifecycle state's name."""
        return self.lifecycle.state

    def on_ready(self) -> None:
        """The socket's session is ready: ``open`` (``Reconnected`` after a drop), arm the rollover."""
        self._ready_at = anyio.current_time()
        if self._ready_scope is not None:
            self._ready_scope.deadline = math.inf  # the socket made it: no ready deadline any more
        self._step_now("ready")
        self._opened.set()

    def on_fatal(self, error: ev.Error) -> None:
        """The first fatal error ends the session (and the caller's body)."""
        if self.fatal is None:
            self.fatal = error
            if self._group is not None:
                self._group.start_soon(self.shutdown, f"fatal error: {error.code}", True)

    def on_expired(self, code: str) -> None:
        """The server says the session is over (``session_expired``): drop the socket and restore.

        Not a planned rollover: it counts toward the failure run, so a server that
        expires every session at once is given up on, not reconnected forever.
        """
        if self._group is not None:
            self._group.start_soon(self._close_socket, code)

    def on_hangup(self, reason: str) -> None:
        """A call policy ended the call: close the session normally, saying which policy."""
        if self._group is not None and not self.lifecycle.ending:
            self._group.start_soon(self.shutdown, f"{POLICY_END}{reason}")

    async def on_rollover_due(self) -> None:
        """``max_session_duration`` elapsed: roll over at the next turn boundary (now, if between turns)."""
        await self._step("rollover_due")
        await self.at_turn_boundary()

    async def at_turn_boundary(self) -> None:
        """Roll a due rollover over if the conversation is between turns."""
        if self.lifecycle.state == _ROLLOVER_DUE:
            await self._step("turn_boundary")

    def _between_turns(self) -> bool:
        conv = self.conv
        return (
            conv is not None
            and conv.state is State.SESSION_READY
            and conv.phase is Phase.IDLE
            and not conv.calls.open()
        )

    # ------------------------------------------------------------------ ending a socket or the session

    async def reset(self) -> None:
        """Roll over now (``Session.reset``): a fresh server conversation on a new socket."""
        await self._step("reset")

    # ------------------------------------------------------------------ stepping the lifecycle

    async def _step(self, trigger: str) -> None:
        """Step the lifecycle and do the actions its table declares."""
        self.lifecycle.fire(trigger)
        for action in self.lifecycle.take_actions():
            if action == CLOSE_SOCKET:
                log.info("rolling the session over to a new socket")
                await self._close_socket("rollover")
            else:
                self._act(action)

    def _step_now(self, trigger: str) -> None:
        """Step by a trigger whose actions are all synchronous (none of them closes a socket)."""
        self.lifecycle.fire(trigger)
        for action in self.lifecycle.take_actions():
            self._act(action)

    def _act(self, action: str) -> None:
        if action == ARM_ROLLOVER:
            if self.settings.max_session_duration is not None and self.effects is not None:
                self.effects.timers.arm(ROLLOVER_TIMER, self.settings.max_session_duration)
        elif action == ANNOUNCE_RECONNECTED:
            self._dispatcher.publish(ev.Reconnected(attempt=self._attempt))
        else:
            raise AssertionError(f"the lifecycle asked for {action!r} where it cannot be done")

    async def _close_socket(self, reason: str) -> None:
        if self._transport is not None and not self.lifecycle.ending:
            await self._transport.aclose(1000, reason)

    async def _fail(self, reason: str, error: BaseException | None) -> None:
        reason = redact(reason)
        log.error("giving up the session: %s", reason)
        self.fatal = ev.Error(
            code=ErrorCode.CONNECTION_FAILED, message=reason, fatal=True, source=ErrorSource.SERVER
        )
        self._dispatcher.publish(self.fatal)
        if error is not None and self.lifecycle.state == _CONNECTING:
            self.failure = error  # connect() raises the original error (e.g. HandshakeError 401)
        await self.shutdown(reason, abort=True)

    async def shutdown(self, reason: str, abort: bool = False) -> None:
        """Close everything within ``close_timeout``; ``abort`` also cancels the caller's body (fatal)."""
        if self.lifecycle.ending:
            await self._closed.wait()
            return
        self._step_now("close")
        reason = redact(reason)
        effects = self.effects
        # Bounded by close_timeout; a caller that gives up on close() must not leave it half done
        # (every later close() and the exit of connect() wait for _closed).
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.settings.close_timeout) as deadline:
                if self.conv is not None and effects is not None:
                    await effects.apply(self.conv.handle(cmd.Close()), sending=False)
                self._dispatcher.publish(ev.Closed(reason=reason, error=self.fatal))
                if effects is not None:
                    effects.audio.close()
                    effects.runner.close()
                    if effects.outbox is not None:
                        effects.outbox.close()
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
            self._step_now("finished")
            self._closed.set()
            self._opened.set()  # wake connect() if it was still waiting
            if self._group is not None:
                self._group.cancel()
            if abort and self._body is not None:
                self._body.cancel()
