"""One accepted connection of the local server: the I/O shell around a :class:`ServerSession`.

Four tasks in one task group, with bounded channels between them:

* the *reader* takes messages off the socket into the inbox (and keeps
  draining it, so keep-alives are answered); when the client goes away it
  ends the connection;
* the *core loop* is the only owner of the session core: it feeds it each
  inbox entry (a client message, or a tick meaning "a deadline passed") and
  puts the events it returns in the outbox, in order;
* the *ticker* sleeps until the core's next deadline (response pacing,
  pings) and then posts a tick;
* the *writer* sends the outbox, applying the connection's :class:`Faults`
  (delay, duplicate, drop, silence) on the way.

A replayed connection runs the :class:`Replay` instead of the core loop and ticker.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.errors import ConnectionClosed, TransportError
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.codec import AnyServerEvent, encode
from engine.protocol.items import RateLimit
from engine.protocol.server import UnknownServerEvent
from engine.server._sockets import abort, stall
from engine.server.conversation import Conversation
from engine.server.faults import Faults, Replay
from engine.server.session import ServerSession
from engine.transports.base import Transport

logger = logging.getLogger(__name__)

INBOX_SIZE = 64
"""Client messages waiting for the core; when full the reader waits (TCP pushes back)."""
OUTBOX_SIZE = 512
"""Server events waiting for the socket; when full the core loop waits."""
LOG_SIZE = 10_000
"""Event types remembered per direction (for tests and debugging)."""

Inbox = str | None  # a client message, or None: a deadline passed


class ServerConnection:
    """One client of the local server; tests inspect it through ``server.connections``.

    Attributes:
        index: 0 for the first accepted connection, then 1, 2...
        path: the request path with its query string.
        faults: what this connection does wrong on purpose.
        core: the session core (``None`` for a replayed connection).
        sent_types: types of the server events sent, in order (the last ``LOG_SIZE``).
        received_types: types of the client messages received (``"?"`` when unreadable).
        dropped: the connection was dropped by a fault.
        silent: the connection went silent by a fault.
    """

    def __init__(
        self,
        *,
        index: int,
        transport: Transport,
        path: str,
        core: ServerSession | None,
        faults: Faults,
        replay: Replay | None = None,
    ) -> None:
        self.index = index
        self.path = path
        self.faults = faults
        self.core = core
        self.replay = replay
        self.sent_types: deque[str] = deque(maxlen=LOG_SIZE)
        self.received_types: deque[str] = deque(maxlen=LOG_SIZE)
        self.sent_count = 0
        self.dropped = False
        self.silent = False
        self._transport = transport
        self._wake = anyio.Event()
        self._closed = anyio.Event()
        self._emit: MemoryObjectSendStream[AnyServerEvent] | None = None
        self._emitted = 0

    @property
    def conversation(self) -> Conversation:
        """The conversation of this connection (raises for a replayed connection)."""
        if self.core is None:
            raise RuntimeError("a replayed connection has no conversation")
        return self.core.conversation

    @property
    def session(self) -> dict[str, Any]:
        """The effective session config (GA dict)."""
        if self.core is None:
            raise RuntimeError("a replayed connection has no session")
        return self.core.session

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._closed.is_set()

    def say_next(self, text: str) -> None:
        """Use ``text`` as the transcript of this connection's next utterance."""
        if self.core is None:
            raise RuntimeError("a replayed connection has no session")
        self.core.say_next(text)

    def emit(self, event: AnyServerEvent) -> None:
        """Send ``event`` now, after what is queued, as if the server produced it (tests: DTMF, idle...)."""
        if self._emit is None or self.closed:
            raise RuntimeError("the connection is not serving")
        self._emitted += 1
        self._emit.send_nowait(event)

    def press(self, digit: str, received_at: int = 0) -> None:
        """The caller pressed ``digit`` (``input_audio_buffer.dtmf_event_received``, as on a SIP call).

        GA gives this event no ``event_id``.
        """
        self.emit(s.InputAudioBufferDtmfEventReceived(event=digit, received_at=received_at))

    def idle_timeout(self, audio_start_ms: int = 0, audio_end_ms: int = 0) -> None:
        """Server VAD's idle timeout fired (``input_audio_buffer.timeout_triggered``)."""
        n = self._emitted + 1  # GA names the item the idle audio became
        event = s.InputAudioBufferTimeoutTriggered(
            event_id=f"event_emitted_{n}",
            item_id=f"item_idle_{n}",
            audio_start_ms=audio_start_ms,
            audio_end_ms=audio_end_ms,
        )
        self.emit(event)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await self._closed.wait()

    async def run(self) -> None:
        """Serve the connection until the client leaves or a fault ends it."""
        inbox_send, inbox_receive = anyio.create_memory_object_stream[Inbox](INBOX_SIZE)
        outbox_send, outbox_receive = anyio.create_memory_object_stream[AnyServerEvent](OUTBOX_SIZE)
        ends: list[MemoryObjectSendStream[Any] | MemoryObjectReceiveStream[Any]] = [
            inbox_send,
            inbox_receive,
            outbox_send,
            outbox_receive,
        ]
        try:
            async with anyio.create_task_group() as group:
                if self.faults.silent_after == 0:
                    self._go_silent()
                if self.faults.drop_after == 0:
                    await self._drop()
                    return
                reader_inbox = inbox_send.clone()
                ends.append(reader_inbox)
                group.start_soon(self._read, reader_inbox, group.cancel_scope)
                group.start_soon(self._write, outbox_receive, group.cancel_scope)
                if self.replay is not None:
                    inbox_send.close()
                    await self._play(self.replay, inbox_receive, outbox_send)
                else:
                    assert self.core is not None
                    group.start_soon(self._tick, self.core, inbox_send)
                    emit = self._emit = outbox_send.clone()
                    ends.append(emit)
                    with emit:  # the writer ends once every sender is closed
                        await self._serve(self.core, inbox_receive, outbox_send)
        finally:
            for end in ends:  # tasks close their ends; these are for tasks cancelled before starting
                end.close()
            self._closed.set()

    async def _read(self, inbox: MemoryObjectSendStream[Inbox], scope: anyio.CancelScope) -> None:
        async with inbox:
            while True:
                try:
                    text = await self._transport.receive()
                except ConnectionClosed as exc:
                    logger.debug("connection %d: client closed (%s)", self.index, exc.code)
                    scope.cancel()
                    return
                except TransportError as exc:  # e.g. a binary frame that is not UTF-8
                    logger.info("connection %d: unreadable message: %s", self.index, exc)
                    self.received_types.append("?")
                    continue
                self.received_types.append(_type_of(text))
                if not self.silent:
                    await inbox.send(text)

    async def _tick(self, core: ServerSession, inbox: MemoryObjectSendStream[Inbox]) -> None:
        async with inbox:
            while True:
                wake = self._wake = anyio.Event()
                deadline = core.next_deadline()
                with anyio.CancelScope(deadline=math.inf if deadline is None else deadline):
                    await wake.wait()
                if wake.is_set():
                    continue  # the core changed: recompute the deadline
                await inbox.send(None)
                await wake.wait()  # until the core loop has handled the tick

    async def _serve(
        self,
        core: ServerSession,
        inbox: MemoryObjectReceiveStream[Inbox],
        outbox: MemoryObjectSendStream[AnyServerEvent],
    ) -> None:
        async with inbox, outbox:
            for event in core.open(anyio.current_time()):
                await outbox.send(event)
            async for text in inbox:
                now = anyio.current_time()
                events = core.poll(now) if text is None else core.receive_text(text, now)
                for event in events:
                    await outbox.send(event)
                    if core.dialect == "openai" and isinstance(event, r.ResponseCreated):
                        # OpenAI reports them as each response starts.
                        self._emitted += 1
                        limits = attrs.evolve(_RATE_LIMITS, event_id=f"event_emitted_{self._emitted}")
                        await outbox.send(limits)
                self._wake.set()

    async def _play(
        self,
        replay: Replay,
        inbox: MemoryObjectReceiveStream[Inbox],
        outbox: MemoryObjectSendStream[AnyServerEvent],
    ) -> None:
        async with inbox, outbox:
            for entry in replay.events:
                if "type" in entry:
                    await outbox.send(UnknownServerEvent(type=str(entry["type"]), raw=dict(entry)))
                elif "sleep" in entry:
                    await anyio.sleep(float(entry["sleep"]))
                elif "await" in entry:
                    async for text in inbox:
                        if text is not None and _type_of(text) == entry["await"]:
                            break
            async for _ in inbox:
                pass

    async def _write(
        self, outbox: MemoryObjectReceiveStream[AnyServerEvent], scope: anyio.CancelScope
    ) -> None:
        async with outbox:
            async for event in outbox:
                kind = event.type if isinstance(event, UnknownServerEvent) else event.TYPE
                if not await self._send(event, kind):
                    scope.cancel()
                    return

    async def _send(self, event: AnyServerEvent, kind: str) -> bool:
        """Send one event through the faults; ``False`` when the connection is over."""
        faults = self.faults
        if self.silent:
            return True
        if faults.drop_at == kind:
            await self._drop()
            return False
        if kind in faults.delay:
            await anyio.sleep(faults.delay[kind])
        text = encode(event)
        for _ in range(2 if kind in faults.duplicate else 1):
            try:
                await self._transport.send(text)
            except ConnectionClosed:
                return False
            self.sent_count += 1
            self.sent_types.append(kind)
            if faults.drop_after is not None and self.sent_count >= faults.drop_after:
                await self._drop()
                return False
            if faults.silent_after is not None and self.sent_count >= faults.silent_after:
                self._go_silent()
                return True
        return True

    async def _drop(self) -> None:
        self.dropped = True
        code = self.faults.close_code
        logger.info("connection %d: dropping (%s)", self.index, "abort" if code is None else code)
        if code is None:
            await abort(self._transport)
        else:
            await self._transport.aclose(code, self.faults.close_reason)

    def _go_silent(self) -> None:
        logger.info("connection %d: going silent", self.index)
        self.silent = True
        stall(self._transport)


_RATE_LIMITS = s.RateLimitsUpdated(
    rate_limits=(
        RateLimit(name="requests", limit=5000, remaining=4999, reset_seconds=0.012),
        RateLimit(name="tokens", limit=40000, remaining=39000, reset_seconds=1.5),
    ),
)


def _type_of(text: str) -> str:
    """The ``type`` of a client message, or ``"?"``."""
    try:
        data: Mapping[str, Any] = json.loads(text)
    except ValueError:
        return "?"
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else "?"
