"""The audio-in actor: caller PCM of any length to ~60 ms ``input_audio_buffer.append``.

Policies, all explicit:

* **Chunking**: audio is re-chunked to ``chunk_ms`` (60 ms: 2,880 bytes at
  24 kHz PCM16) as Inworld's reference client does; ``flush()`` sends the tail
  too (before a manual commit, so the last words are not left behind).
* **Backpressure**: ``send_audio`` waits when this actor's inbox is full, which
  slows the producer rather than growing a buffer.
* **Holding**: until the session is ready (and again while reconnecting) chunks
  are held, up to ``hold_limit_ms``, and sent in order as soon as the gate
  opens. Beyond the limit the oldest (``drop_oldest``) or the newest
  (``drop_newest``) chunks are dropped, and the drop is reported.
* **Pausing**: while paused, audio is discarded on arrival.
* **Sample alignment**: a call may carry any number of bytes (a half sample
  is completed by the next call), but where the caller's stream is cut (a
  commit, a pause) an incomplete sample left over would shift every sample of
  the next turn by a byte (noise to the model). It is dropped and reported
  (``report_misaligned``); ``clear()`` discards the unsent tail with the turn.
  PCM16 samples are 2 bytes, G.711 (``pcmu``/``pcma``) samples one.
* **Direct path**: while the gate is open, the actor has nothing in hand and
  the outbox has room, a chunk is encoded and queued in the caller's task,
  which saves two task switches per chunk. Anything else (holding, a full
  outbox, chunks already waiting for the actor) goes through the actor, so
  the order is kept and the caller never waits on the socket.

Linear in the audio size: the buffer is a ``bytearray`` consumed from the
front, never re-copied as it grows.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.actors.group import Starter
from engine.actors.outbox import Outbox
from engine.errors import UsageTypeError
from engine.protocol.codec import encode_audio_append
from engine.protocol.config import AudioFormat

log = logging.getLogger(__name__)


class _Flush:
    def __init__(self) -> None:
        self.done = anyio.Event()


class AudioIn:
    """Owns the caller-audio path from ``send_audio`` to the outbox."""

    def __init__(
        self,
        fmt: AudioFormat,
        outbox: Outbox | None,
        *,
        report_drop: Callable[[int], None],  # called with the drops so far in this episode
        report_misaligned: Callable[[int, str], None] = lambda dropped, where: None,
        report_overflow: Callable[[], None] = lambda: None,  # put_nowait dropped audio (once per overflow)
        chunk_ms: int = 60,
        hold_limit_ms: int = 10_000,
        hold_policy: str = "drop_oldest",
        inbox_size: int = 32,
    ) -> None:
        if hold_policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"hold_policy must be 'drop_oldest' or 'drop_newest', got {hold_policy!r}")
        frame = 2 if fmt.type == "audio/pcm" else 1
        self.chunk_bytes = max(frame, fmt.bytes_per_second * chunk_ms // 1000 // frame * frame)
        self._frame = frame
        self._hold_limit = max(1, hold_limit_ms // chunk_ms)
        self._hold_policy = hold_policy
        self.outbox = outbox
        self._report_drop = report_drop
        self._report_misaligned = report_misaligned
        self._report_overflow = report_overflow
        self._overflowing = False  # put_nowait is dropping: reported once until a chunk is taken again
        self._inbox_size = inbox_size
        self._tg: Starter | None = None
        self._send: MemoryObjectSendStream[bytes | _Flush] | None = None
        self._buffer = bytearray()
        self._held: deque[str] = deque()
        self._open = False
        self._episode_drops = 0  # drops since the gate last opened: the first one is reported
        self._in_hand = 0  # messages given to the actor and not yet handled (the direct path waits)
        self._flushes: set[_Flush] = set()  # flush() calls waiting for the actor (close wakes them)
        self._paused = False
        self.chunks_sent = 0
        self.dropped_chunks = 0
        self.misaligned_bytes = 0

    @property
    def paused(self) -> bool:
        """While True, audio is discarded on arrival."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        if value and not self._paused:
            self._realign("pause")  # the audio after the pause does not continue this sample
        self._paused = value

    def start_in(self, tg: Starter) -> None:
        """Where to run: the actor's task starts with the first audio (idle sessions stay small)."""
        self._tg = tg

    def _inbox(self) -> MemoryObjectSendStream[bytes | _Flush]:
        if self._send is None:
            if self._tg is None:
                raise anyio.ClosedResourceError
            self._send, receive = anyio.create_memory_object_stream[bytes | _Flush](self._inbox_size)
            self._tg.start_soon(self._run_inbox, receive, name="audio in")
        return self._send

    async def put(self, pcm: bytes | bytearray | memoryview) -> None:
        """Accept caller audio (waits if the actor is behind; discarded while paused).

        Raises:
            TypeError: ``pcm`` is not bytes, bytearray or memoryview (``None`` or a
                ``str`` is a caller's mistake, not silence).
        """
        if not isinstance(pcm, bytes | bytearray | memoryview):
            raise UsageTypeError(
                f"send_audio() takes bytes, bytearray or memoryview, not {type(pcm).__name__}"
            )
        if self._paused or not pcm:
            return
        # Re-chunk here, in the caller's task: the actor wakes once per whole chunk
        # (60 ms), not once per microphone frame.
        self._buffer += pcm
        size = self.chunk_bytes
        while len(self._buffer) >= size:
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]  # bytearray drops its head without copying the rest
            if self._open and not self._in_hand and self._send_direct(chunk):
                continue
            await self._to_actor(chunk)

    def put_nowait(self, pcm: bytes | bytearray | memoryview) -> None:
        """Accept caller audio without waiting: a chunk that finds the inbox full is dropped.

        The drop is counted in ``dropped_chunks`` and reported once per overflow
        (``report_overflow``): an audio callback can neither wait nor handle an error.

        Raises:
            TypeError: as :meth:`put`.
        """
        if not isinstance(pcm, bytes | bytearray | memoryview):
            raise UsageTypeError(
                f"send_audio_nowait() takes bytes, bytearray or memoryview, not {type(pcm).__name__}"
            )
        if self._paused or not pcm:
            return
        self._buffer += pcm
        size = self.chunk_bytes
        while len(self._buffer) >= size:
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            if self._open and not self._in_hand and self._send_direct(chunk):
                self._overflowing = False
                continue
            try:
                inbox = self._inbox()
                inbox.send_nowait(chunk)
            except anyio.WouldBlock:
                self.dropped_chunks += 1
                if not self._overflowing:
                    self._overflowing = True
                    log.warning("send_audio_nowait: the audio-in inbox is full; dropping caller audio")
                    self._report_overflow()
                continue
            self._in_hand += 1
            self._overflowing = False

    def _send_direct(self, chunk: bytes) -> bool:
        """Queue ``chunk`` in the outbox from the caller's task, if that can be done without waiting."""
        assert self.outbox is not None
        try:
            if not self.outbox.send_nowait(encode_audio_append(chunk)):
                return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._open = False  # the socket is gone: the actor holds from now on
            return False
        self.chunks_sent += 1
        return True

    async def _to_actor(self, message: bytes | _Flush) -> None:
        inbox = self._inbox()
        self._in_hand += 1
        try:
            try:
                inbox.send_nowait(message)
            except anyio.WouldBlock:
                await inbox.send(message)
        except BaseException:
            self._in_hand -= 1  # it never reached the actor
            raise

    def _realign(self, where: str) -> None:
        """Drop an incomplete sample at the end of the buffer (reported): the caller's stream is cut here."""
        stray = len(self._buffer) % self._frame
        if stray:
            del self._buffer[-stray:]
            self.misaligned_bytes += stray
            log.warning("dropped %d byte(s) of an incomplete audio sample at %s", stray, where)
            self._report_misaligned(stray, where)

    def clear(self) -> None:
        """Discard the audio not yet sent (``clear_audio``: it belongs to the cleared turn)."""
        self._buffer.clear()

    async def flush(self) -> None:
        """Send everything buffered, even a tail shorter than a chunk, and wait until queued."""
        self._realign("commit")
        if self._buffer:
            tail = bytes(self._buffer)
            self._buffer.clear()
            await self._to_actor(tail)
        marker = _Flush()
        self._flushes.add(marker)
        try:
            await self._to_actor(marker)
            await marker.done.wait()
        finally:
            self._flushes.discard(marker)

    async def set_gate(self, open_: bool) -> None:
        """Open: send held chunks in order, then stream. Close: hold from now on."""
        if not open_:
            self._open = False
            return
        assert self.outbox is not None, "the gate opens only once a socket is up"
        self._episode_drops = 0
        while self._held:
            try:
                await self.outbox.send(self._held[0])
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the socket went away again: keep holding
            self._held.popleft()
            self.chunks_sent += 1
        self._open = True

    def close(self) -> None:
        """Stop accepting audio, and wake every flush() (the actor may never reach its marker)."""
        self._tg = None
        if self._send is not None:
            self._send.close()
        for marker in self._flushes:
            marker.done.set()

    async def _run_inbox(self, receive: MemoryObjectReceiveStream[bytes | _Flush]) -> None:
        """Chunk, encode and forward audio until closed."""
        async with receive:
            async for first in receive:
                await self._take(first)
                while True:  # the rest of a burst, without a task switch per frame
                    try:
                        message = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    await self._take(message)

    async def _take(self, message: bytes | _Flush) -> None:
        try:
            if isinstance(message, _Flush):
                message.done.set()  # everything before it has been emitted
                return
            await self._emit(message)
        finally:
            self._in_hand -= 1

    async def _emit(self, chunk: bytes) -> None:
        text = encode_audio_append(chunk)
        if self._open and self.outbox is not None:
            try:
                await self.outbox.send(text)
                self.chunks_sent += 1
                return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._open = False  # the socket is gone before the gate closed: hold from now on
        if len(self._held) >= self._hold_limit:
            self.dropped_chunks += 1
            self._episode_drops += 1
            self._report_drop(self._episode_drops)
            if self._hold_policy == "drop_newest":
                return
            self._held.popleft()
        self._held.append(text)
