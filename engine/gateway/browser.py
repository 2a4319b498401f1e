"""The browser bridge actor: one call from the page, ``WS /browser`` <-> :class:`Session`.

Like the phone bridge (:mod:`engine.gateway.bridge`), one task group per call,
inside the session's ``connect()``:

* **page reader**: decodes frames (:mod:`engine.gateway.browser_protocol`);
  microphone audio goes to the uplink channel; the player's positions become
  ``session.audio_played`` through a :class:`PlayedLedger` (the page is a sink
  that acknowledges, like a carrier's marks); ``hangup`` ends the call. It
  never waits on the session.
* **uplink**: microphone audio to ``session.send_audio``. The channel holds
  ``UPLINK_FRAMES`` frames (a second or more of the page's 20 ms frames); when
  it is full the newest frame is dropped, counted and logged once per run.
* **downlink**: the only writer of the page's socket while the session lives.
  It consumes every session event (a bounded stream whose overflow policy is
  the session's ``event_buffer``): ``AudioOut`` becomes a binary audio frame;
  ``Interrupted`` becomes ``flush`` at once (later audio of that response is
  dropped); every event the live view shows becomes an ``event`` message.

The call speaks 16-bit PCM at the agent's rates in both directions (24 kHz
unless configured otherwise). It ends when the page hangs up or disconnects,
when the gateway asks (:meth:`BrowserBridge.stop`, the drain), or when the
session ends; the session is closed first, then the socket, both bounded.
"""

from __future__ import annotations

import contextlib
import logging
import time

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.actors.dispatch import EventStream
from engine.actors.session import Session
from engine.core import events as ev
from engine.errors import SessionClosed
from engine.gateway import browser_protocol as bp
from engine.gateway.agent import Agent, Call
from engine.gateway.calls import CALLER_HUNG_UP, CallRegistry, LiveCall
from engine.gateway.metrics import OBSERVED
from engine.gateway.watch import ViewTracker, machine_states
from engine.observe.logs import call_context
from engine.protocol.config import AudioFormat
from engine.providers import Provider
from engine.transports.base import Connector

log = logging.getLogger(__name__)

UPLINK_FRAMES = 64
"""Microphone frames queued for the session; newer ones are dropped beyond."""
PAGE_GONE = "page disconnected"


class PageGone(Exception):
    """The page's socket closed or failed."""


class PageSocket:
    """Starlette's WebSocket as the bridge needs it: receive, send text or bytes, close once."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._closed = False

    async def receive(self) -> str | bytes:
        if self._closed:
            raise PageGone("closed")
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise PageGone(f"disconnected ({message.get('code')})")
        text = message.get("text")
        return str(text) if text is not None else bytes(message.get("bytes") or b"")

    async def send(self, frame: str | bytes) -> None:
        if self._closed:
            raise PageGone("closed")
        try:
            if isinstance(frame, bytes):
                await self._ws.send_bytes(frame)
            else:
                await self._ws.send_text(frame)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._closed = True
            raise PageGone(str(exc)) from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(code, reason)


class BrowserBridge:
    """One browser call. ``await run()`` serves it to the end; the registry learns the outcome.

    Args:
        socket: the page's WebSocket, accepted.
        agent: builds the call's session (its ``on_call`` hooks see ``carrier="browser"``).
        live: the registry's entry for this call.
        registry: admission, metrics, the live view's feed and the end-of-call log line.
        provider: overrides the agent's provider.
        connector: how the session opens its socket (tests).
        close_timeout: seconds for closing the page's socket.
        rate: the PCM sample rate of the call, both ways.
    """

    def __init__(
        self,
        socket: PageSocket,
        agent: Agent,
        live: LiveCall,
        registry: CallRegistry,
        *,
        provider: Provider | None = None,
        connector: Connector | None = None,
        close_timeout: float = 3.0,
        rate: int = 24000,
    ) -> None:
        self._socket = socket
        self._agent = agent
        self._live = live
        self._registry = registry
        self._provider = provider
        self._connector = connector
        self._close_timeout = close_timeout
        self._rate = rate
        self._ledger = bp.PlayedLedger()
        self._scope: anyio.CancelScope | None = None
        self._reason: str | None = None
        self._failure: str | None = None
        self._cut: set[str] = set()
        self._dropped = 0
        self.malformed = 0
        """Frames from the page that could not be used (each logged)."""

    def stop(self, reason: str) -> None:
        """End the call cleanly (the session is closed, then the page's socket): for the drain."""
        if self._reason is None:
            self._reason = reason
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Serve the call until it ends; never raises for the page's or the session's faults."""
        self._live.stop = self.stop
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._reason is not None:
                    scope.cancel()
                with call_context(self._live.id, carrier="browser"):  # every record of the call names it
                    await self._serve()
        except Exception as exc:  # a bug of ours must end this call only, never the gateway
            log.exception("call %s: the browser bridge failed", self._live.id)
            self._failure = self._failure or f"bridge failed: {type(exc).__name__}"
        finally:
            with anyio.CancelScope(shield=True):
                self._registry.set_state(self._live, "ending")
                with anyio.move_on_after(self._close_timeout):
                    await self._socket.aclose(1000 if self._failure is None else 1011, "call ended")
            reason = self._failure or self._reason or PAGE_GONE
            self._registry.finish(self._live, reason, failed=self._failure is not None)

    async def _serve(self) -> None:
        audio = AudioFormat(type="audio/pcm", rate=self._rate)
        call = Call(
            id=self._live.id, carrier="browser", call_id=self._live.id, stream_id=self._live.id, audio=audio
        )
        self._registry.started(self._live, call)
        try:
            config = await self._agent.config_for(call)
        except Exception as exc:
            log.exception("call %s: an on_call hook refused the call", self._live.id)
            self._failure = f"refused by on_call: {type(exc).__name__}"
            await self._tell_failure(self._failure)
            return
        session = self._agent.session(config, provider=self._provider, connector=self._connector)
        session.on(*OBSERVED)(self._registry.metrics.for_call())
        session.on(ev.TurnMetrics)(self._count_turn)
        self._registry.observe(self._live, session)
        events = session.events()
        send, receive = anyio.create_memory_object_stream[bytes](UPLINK_FRAMES)
        try:
            async with session.connect():
                self._registry.set_state(self._live, "active")
                hello = bp.control(
                    "hello",
                    call_id=self._live.id,
                    input_rate=config.input_format.rate,
                    output_rate=config.output_format.rate,
                    states=machine_states(session),
                )
                await self._socket.send(hello)
                if self._agent.greet:
                    await session.create_response()
                async with anyio.create_task_group() as tg:
                    self._scope = tg.cancel_scope
                    if self._reason is not None:
                        tg.cancel_scope.cancel()
                    tg.start_soon(self._read_page, session, send, name=f"{self._live.id} page reader")
                    tg.start_soon(self._uplink, session, receive, name=f"{self._live.id} uplink")
                    await self._downlink(session, events)
                    tg.cancel_scope.cancel()  # the session ended: so does the call
        except PageGone:
            self._reason = self._reason or PAGE_GONE
        except Exception as exc:
            self._failure = self._failure or f"session failed: {exc}"
            log.warning("call %s: the session failed: %s", self._live.id, exc)
        finally:
            send.close()
            receive.close()
        if self._failure is not None and self._reason is None:
            await self._tell_failure(self._failure)
        elif self._reason is None:
            self._reason = "session closed"

    async def _tell_failure(self, why: str) -> None:
        """Say on the page why the call cannot go on (bounded; the page may be gone)."""
        view = {"kind": "error", "code": "call_failed", "message": why, "fatal": True, "t": 0.0}
        with anyio.move_on_after(self._close_timeout), contextlib.suppress(PageGone):
            await self._socket.send(bp.control("event", event=view))

    def _count_turn(self, _: ev.TurnMetrics) -> None:
        self._live.turns += 1

    async def _read_page(self, session: Session, uplink: MemoryObjectSendStream[bytes]) -> None:
        while True:
            try:
                frame = await self._socket.receive()
            except PageGone:
                self.stop(PAGE_GONE)
                return
            message = bp.decode(frame)
            if isinstance(message, bp.Audio):
                try:
                    uplink.send_nowait(message.pcm)
                    self._dropped = 0
                except anyio.WouldBlock:
                    self._dropped += 1
                    if self._dropped == 1:
                        log.warning(
                            "call %s: the session is behind; dropping microphone audio", self._live.id
                        )
            elif isinstance(message, bp.Played):
                position = self._ledger.played(message)
                if position is not None:
                    session.audio_played(*position)
            elif isinstance(message, bp.Hangup):
                self.stop(CALLER_HUNG_UP)
                return
            else:
                self.malformed += 1
                self._registry.metrics.error("browser_malformed")
                log.warning(
                    "call %s: unusable frame from the page (%s), ignored", self._live.id, message.reason
                )

    async def _uplink(self, session: Session, frames: MemoryObjectReceiveStream[bytes]) -> None:
        try:
            async for pcm in frames:
                await session.send_audio(pcm)
        except SessionClosed:
            return  # the session is ending; the downlink sees why

    async def _downlink(self, session: Session, events: EventStream) -> None:
        """The only writer of the page's socket while the session lives."""
        bytes_per_ms = self._rate * 2 / 1000
        tracker = ViewTracker(machine_states(session), time.monotonic(), time.monotonic)
        async for event in events:
            if isinstance(event, ev.AudioOut):
                if event.item_id is None or event.response_id in self._cut or event.item_id in self._cut:
                    continue  # audio of a cut response that was already queued: never played
                self._ledger.sent(event.item_id, len(event.pcm) / bytes_per_ms)
                await self._send(bp.audio_frame(event.item_id, event.pcm))
                continue
            if isinstance(event, ev.Interrupted):
                await self._send(bp.control("flush", item_id=event.item_id))
                self._ledger.flush()
                self._cut.update(x for x in (event.item_id, event.response_id) if x is not None)
            for view in tracker.seen(event, machine_states(session)):
                await self._send(bp.control("event", event=view))
            if isinstance(event, ev.Closed):
                if event.error is not None:
                    self._failure = f"session failed: {event.error.code}: {event.error.message}"
                return

    async def _send(self, frame: str | bytes) -> None:
        try:
            await self._socket.send(frame)
        except PageGone:
            self.stop(PAGE_GONE)


__all__ = ["BrowserBridge", "PageGone", "PageSocket"]
