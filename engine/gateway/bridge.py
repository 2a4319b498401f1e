"""The bridge actor: one phone call, carrier socket <-> :class:`CarrierStream` <-> :class:`Session`.

One task group per call, inside the session's ``connect()``:

* **carrier reader**: receives frames, decodes them with the dialect's stream,
  hands caller audio to the session without waiting
  (``session.send_audio_nowait``), maps mark echoes to
  ``session.audio_played`` through the mark ledger, delivers DTMF to the
  agent's callbacks, and ends the call on ``stop`` (the caller hung up). It
  never waits on the session, so the carrier's marks and ``stop`` are always
  read promptly. Overflow policy for caller audio (the session's): when the
  session's audio-in actor is too far behind to take a chunk, the newest
  chunk is dropped, counted and reported once per overflow (audio that late
  is worth less than a reader that keeps draining). In the steady state a
  chunk goes from this task straight to the session's outbox: no task
  switch per frame.
* **downlink**: the only task that writes to the carrier socket while the
  session lives. It consumes the session's events (a bounded stream of the
  session's own, whose overflow policy is the session's ``event_buffer``):
  ``AudioOut`` becomes a ``media`` frame and a ``mark`` (every ``mark_every``
  chunks); ``Interrupted`` becomes ``clear`` at once, later audio of that
  response is dropped and the ledger forgets the cleared marks.

G.711 passes through: the call's session speaks the carrier's format in and
out (``audio/pcmu`` at 8000 Hz for Twilio), so payloads are never converted.

Ending: the call ends when the carrier stops or disconnects, when the gateway
asks (:meth:`Bridge.stop`, used by the drain), or when the session fails. The
session is closed first (leaving ``connect()``), then the carrier's socket is
closed with 1000, both bounded. A session that fails (it could not connect,
or ended on a fatal error) gets the caller a short apology before the socket
closes: two falling tones (no speech synthesis is available without the
realtime service), encoded in the call's format, awaited through a mark.
"""

from __future__ import annotations

import array
import logging
import math
import sys
from typing import Protocol

import anyio

from engine.actors.dispatch import EventStream
from engine.actors.session import Session
from engine.audio import g711_encode
from engine.core import events as ev
from engine.errors import SessionClosed
from engine.gateway.agent import Agent, Call
from engine.gateway.calls import CALLER_HUNG_UP, CARRIER_GONE, NO_START, CallRegistry, LiveCall
from engine.gateway.carriers.base import (
    CarrierFailure,
    CarrierStream,
    Connected,
    Dtmf,
    Malformed,
    MarkDone,
    Media,
    Started,
    Stopped,
)
from engine.gateway.events import Dtmf as DtmfEvent
from engine.gateway.marks import MarkLedger
from engine.gateway.metrics import OBSERVED
from engine.observe.logs import call_context
from engine.protocol.config import AudioFormat
from engine.providers import Provider
from engine.transports.base import Connector

log = logging.getLogger(__name__)

APOLOGY_MARK = "apology"


class CarrierGone(Exception):
    """The carrier's socket closed or failed."""


class CarrierSocket(Protocol):
    """The carrier's WebSocket as the bridge needs it (the app adapts Starlette's)."""

    async def receive(self) -> str | bytes:
        """The next frame; raises :class:`CarrierGone` once the socket is closed."""
        ...

    async def send(self, text: str) -> None:
        """Send a text frame; raises :class:`CarrierGone` once the socket is closed."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (idempotent, never raises)."""
        ...


class Bridge:
    """One call's bridge. ``await run()`` serves it to the end; the registry learns the outcome.

    Args:
        socket: the carrier's WebSocket, accepted.
        stream: the dialect's sans-IO stream for this call.
        agent: builds the call's session.
        live: the registry's entry for this call.
        registry: admission, metrics and the end-of-call log line.
        provider: overrides the agent's provider (``--url``, the built-in local server).
        connector: how the session opens its socket (tests).
        start_timeout: seconds to wait for the carrier's ``start``.
        close_timeout: seconds for closing the carrier's socket and for the apology.
        mark_every: send a mark after this many assistant chunks (1: after each).
    """

    def __init__(
        self,
        socket: CarrierSocket,
        stream: CarrierStream,
        agent: Agent,
        live: LiveCall,
        registry: CallRegistry,
        *,
        provider: Provider | None = None,
        connector: Connector | None = None,
        start_timeout: float = 10.0,
        close_timeout: float = 3.0,
        mark_every: int = 1,
    ) -> None:
        if mark_every < 1:
            raise ValueError(f"mark_every must be at least 1, got {mark_every}")
        self._socket = socket
        self._stream = stream
        self._agent = agent
        self._live = live
        self._registry = registry
        self._provider = provider
        self._connector = connector
        self._start_timeout = start_timeout
        self._close_timeout = close_timeout
        self._mark_every = mark_every
        self._marks = MarkLedger()
        self._outer: anyio.CancelScope | None = None
        self._scope: anyio.CancelScope | None = None  # what stop() cancels: the call's innermost part
        self._reason: str | None = None
        self._failure: str | None = None
        self._session: Session | None = None
        self._call: Call | None = None
        self._bytes_per_ms = 8.0
        self._unmarked = 0
        self._cut: set[str] = set()
        self.malformed = 0
        """Frames from the carrier that could not be used (each logged)."""

    # ------------------------------------------------------------------ control

    def stop(self, reason: str) -> None:
        """End the call cleanly (the session is closed, then the carrier's socket): for the drain."""
        self._end(reason)

    def _end(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Serve the call until it ends; never raises for the carrier's or the session's faults."""
        self._live.stop = self.stop
        try:
            with anyio.CancelScope() as outer:
                self._outer = self._scope = outer
                if self._reason is not None:  # stopped before it began
                    outer.cancel()
                with call_context(self._live.id):  # every record logged for the call names it
                    started = await self._await_start()
                if started is not None:
                    carrier = {"carrier_call_id": started.call_id, "carrier_stream_id": started.stream_id}
                    with call_context(self._live.id, **carrier):
                        await self._serve(started)
        except Exception as exc:  # a bug of ours must end this call only, never the gateway
            log.exception("call %s: the bridge failed", self._live.id)
            self._failure = self._failure or f"bridge failed: {type(exc).__name__}"
        finally:
            with anyio.CancelScope(shield=True):
                self._registry.set_state(self._live, "ending")
                with anyio.move_on_after(self._close_timeout):
                    await self._socket.aclose(1000, "call ended")
            reason = self._failure or self._reason or CARRIER_GONE
            self._registry.finish(self._live, reason, failed=self._failure is not None)

    # ------------------------------------------------------------------ start

    async def _await_start(self) -> Started | None:
        """Read frames until the carrier's ``start``; None if the call ended first."""
        with anyio.move_on_after(self._start_timeout):
            while True:
                try:
                    frame = await self._socket.receive()
                except CarrierGone:
                    self._end(CARRIER_GONE)
                    return None
                for event in self._decode(frame):
                    if isinstance(event, Started):
                        return event
                    if isinstance(event, Stopped):
                        self._end(CALLER_HUNG_UP)
                        return None
                    if not isinstance(event, (Connected, Malformed)):
                        log.debug("call %s: %s before start, ignored", self._live.id, type(event).__name__)
        self._end(NO_START)
        return None

    def _decode(self, frame: str | bytes) -> list[object]:
        events: list[object] = list(
            self._stream.receive(frame) if isinstance(frame, str) else self._stream.receive_bytes(frame)
        )
        for event in events:
            if isinstance(event, Malformed):
                self.malformed += 1
                self._registry.metrics.error("carrier_malformed")
                log.warning(
                    "call %s: unusable frame from the carrier (%s), ignored: %r",
                    self._live.id,
                    event.reason,
                    event.raw[:120],
                )
            elif isinstance(event, CarrierFailure):
                self._registry.metrics.error("carrier_error")
                log.warning("call %s: the carrier reported %s: %s", self._live.id, event.code, event.message)
        return events

    # ------------------------------------------------------------------ the call

    async def _serve(self, started: Started) -> None:
        fmt = started.media_format
        audio = AudioFormat(type=fmt.encoding, rate=fmt.rate)
        call = self._call = Call(
            id=self._live.id,
            carrier=self._stream.name,
            call_id=started.call_id,
            stream_id=started.stream_id,
            account_id=started.account_id,
            custom_parameters=dict(started.custom_parameters),
            audio=audio,
        )
        self._bytes_per_ms = audio.bytes_per_second / 1000
        self._registry.started(self._live, call)
        try:
            config = await self._agent.config_for(call)
        except Exception as exc:
            log.exception("call %s: an on_call hook refused the call", self._live.id)
            self._failure = f"refused by on_call: {type(exc).__name__}"
            return
        session = self._session = self._agent.session(
            config, provider=self._provider, connector=self._connector
        )
        session.on(*OBSERVED)(self._registry.metrics.for_call())
        session.on(ev.TurnMetrics)(self._count_turn)
        self._registry.observe(self._live, session)  # the live view of /calls and its watchers
        events = session.events(ev.AudioOut, ev.Interrupted, ev.Closed)
        try:
            async with session.connect():
                self._registry.set_state(self._live, "active")
                if self._agent.greet:
                    await session.create_response()
                async with anyio.create_task_group() as tg:
                    self._scope = tg.cancel_scope
                    if self._reason is not None:
                        tg.cancel_scope.cancel()
                    tg.start_soon(self._read_carrier, name=f"{self._live.id} carrier reader")
                    await self._downlink(events)
                    tg.cancel_scope.cancel()  # the session ended: so does the call
                self._scope = self._outer
        except Exception as exc:
            self._failure = self._failure or f"session failed: {exc}"
            log.warning("call %s: the session failed: %s", self._live.id, exc)
        if self._failure is not None:
            await self._apologize()
        elif self._reason is None:
            self._reason = "session closed"

    def _count_turn(self, _: ev.TurnMetrics) -> None:
        self._live.turns += 1

    async def _read_carrier(self) -> None:
        session = self._session
        assert session is not None
        while True:
            try:
                frame = await self._socket.receive()
            except CarrierGone:
                self._end(CARRIER_GONE)
                return
            for event in self._decode(frame):
                if isinstance(event, Media):
                    try:
                        session.send_audio_nowait(event.payload)
                    except SessionClosed:
                        return  # the session is ending; the downlink sees why
                elif isinstance(event, MarkDone):
                    for played in self._marks.echoed(event.name):
                        session.audio_played(played.item_id, played.ms)
                elif isinstance(event, Dtmf):
                    # Delivered like the session's own events: each callback has its own queue.
                    session.publish(DtmfEvent(digit=event.digit, call_id=self._live.id))
                elif isinstance(event, Stopped):
                    self._end(CALLER_HUNG_UP)
                    return

    async def _downlink(self, events: EventStream) -> None:
        """The only writer of the carrier socket while the session lives."""
        async for event in events:
            if self._reason is not None:
                # The call is ending (the carrier stopped, or the gateway ends it): events
                # queued before the reader saw it are not sent (the stream refuses frames after stop).
                return
            if isinstance(event, ev.AudioOut):
                if event.response_id in self._cut or event.item_id in self._cut:
                    continue  # audio of a cut response that was already queued: never played
                await self._send(self._stream.media(event.pcm))
                if event.item_id is None:
                    continue
                self._marks.sent(event.item_id, len(event.pcm) / self._bytes_per_ms)
                self._unmarked += 1
                if self._unmarked >= self._mark_every:
                    await self._mark()
            elif isinstance(event, ev.Interrupted):
                await self._send(self._stream.clear())
                self._marks.clear()
                self._unmarked = 0
                self._cut.update(x for x in (event.item_id, event.response_id) if x is not None)
            elif isinstance(event, ev.Closed):
                if event.error is not None:
                    self._failure = f"session failed: {event.error.code}: {event.error.message}"
                elif self._reason is None and event.reason:
                    self._reason = event.reason  # e.g. "call ended by policy: idle"
                return

    async def _mark(self) -> None:
        name = self._marks.mark()
        self._unmarked = 0
        if name is not None:
            await self._send(self._stream.mark(name))

    async def _send(self, text: str) -> None:
        try:
            await self._socket.send(text)
        except CarrierGone:
            self._end(CARRIER_GONE)

    # ------------------------------------------------------------------ apology

    async def _apologize(self) -> None:
        """Play the apology tones and wait (bounded) for the carrier to have played them."""
        if self._call is None or self._reason is not None:
            return  # the caller is gone, or the gateway is ending the call anyway
        self._scope = self._outer
        with anyio.move_on_after(self._close_timeout):
            try:
                await self._socket.send(self._stream.media(apology(self._call.audio)))
                await self._socket.send(self._stream.mark(APOLOGY_MARK))
                while True:
                    frame = await self._socket.receive()
                    for event in self._decode(frame):
                        if isinstance(event, MarkDone) and event.name == APOLOGY_MARK:
                            return
                        if isinstance(event, Stopped):
                            self._reason = CALLER_HUNG_UP
                            return
            except CarrierGone:
                return


def apology(fmt: AudioFormat) -> bytes:
    """Two falling tones (about 0.7 s) in ``fmt``: the call cannot go on."""
    rate = fmt.rate
    samples = array.array("h")
    for hz, seconds in ((660.0, 0.25), (0.0, 0.08), (440.0, 0.35)):
        n = int(rate * seconds)
        for i in range(n):
            fade = min(1.0, i / (0.01 * rate), (n - i) / (0.01 * rate))
            samples.append(int(8000 * fade * math.sin(2 * math.pi * hz * i / rate)) if hz else 0)
    if fmt.type == "audio/pcm":
        if sys.byteorder == "big":
            samples.byteswap()
        return samples.tobytes()  # 16-bit little-endian
    return g711_encode(fmt.type, samples)
