"""The outbound path: one bounded queue of encoded messages and the socket writer.

Only :func:`run_writer` writes to the socket. Producers (the reader applying
effects, user commands, audio-in, tool results) share one fair lock, so client
events reach the socket in the order the core produced them, and a full queue
makes producers wait (backpressure) instead of growing without bound.
"""

from __future__ import annotations

import logging

import anyio

from engine.errors import ConnectionClosed, TransportError
from engine.transports.base import Transport

log = logging.getLogger(__name__)


class Outbox:
    """Encoded client events on their way to the socket writer."""

    def __init__(self, size: int = 64) -> None:
        self._send, self.receive = anyio.create_memory_object_stream[str](size)
        self._lock = anyio.Lock()
        self._wake: anyio.Event | None = None  # set while the writer waits for a message
        self.sent = 0

    async def send(self, text: str) -> None:
        """Queue one message, waiting (in arrival order) while the queue is full."""
        if self.send_nowait(text):
            return
        async with self._lock:
            await self._send.send(text)
        self._notify()

    def send_nowait(self, text: str) -> bool:
        """Queue one message if that needs no wait; False if the queue is full or others wait for room."""
        if self._lock.locked():
            return False  # queueing now would overtake them
        try:
            self._send.send_nowait(text)
        except anyio.WouldBlock:
            return False
        self._notify()
        return True

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def next(self) -> str:
        """The next message, for the writer; raises ``anyio.EndOfStream`` once closed and drained.

        The stream's own ``receive`` passes through the scheduler before it
        waits; the writer empties the queue on every wake, so it waits on an
        event that the next queued message sets instead (one task switch per
        wake, not two).
        """
        while True:
            try:
                return self.receive.receive_nowait()
            except anyio.WouldBlock:
                self._wake = anyio.Event()
                await self._wake.wait()
            except anyio.ClosedResourceError:
                raise anyio.EndOfStream from None

    def close(self) -> None:
        """No more messages; the writer ends once the queue is drained."""
        self._send.close()
        self._notify()

    def close_all(self) -> None:
        """Close both ends (the socket is gone: what is queued is dropped)."""
        self._send.close()
        self.receive.close()
        self._notify()

    def statistics(self) -> int:
        """Messages waiting in the queue."""
        return self._send.statistics().current_buffer_used


async def run_writer(outbox: Outbox, transport: Transport) -> None:
    """Send queued messages until the outbox closes or the socket fails (then return)."""
    try:
        async with outbox.receive:
            while True:
                try:
                    text = await outbox.next()
                except anyio.EndOfStream:
                    return
                await transport.send(text)
                outbox.sent += 1
    except ConnectionClosed as exc:
        log.info("writer stopped: socket closed (%s)", exc.code)
    except TransportError as exc:
        log.warning("writer stopped: %s", exc)
