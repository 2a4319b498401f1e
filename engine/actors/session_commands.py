"""What the application tells a live ``Session``: text, images, audio, turns, responses.

A mixin of :class:`engine.actors.session.Session` (the facade stays one class).
Each command checks its arguments, checkpoints, and hands the core's effects to
the effects actor; before ``connect()`` it raises ``NotConnected`` and once the
session is closing ``SessionClosed`` (with the reason and the fatal ``Error``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.from_thread
import anyio.lowlevel

from engine.actors.dispatch import in_callback_thread
from engine.actors.effects import Interpreter
from engine.actors.settings import SessionSettings
from engine.core import commands as cmd
from engine.core.conversation import Conversation
from engine.core.lifecycle import Lifecycle, LifecycleMachine
from engine.errors import NotConnected, SessionClosed, UsageTypeError
from engine.protocol.client import ResponseParams
from engine.protocol.items import Item, image_data_url
from engine.protocol.text import check_item, check_text
from engine.providers import Provider

if TYPE_CHECKING:
    from engine.actors.supervisor import Supervisor


class Commands:
    """The ``Session``'s commands (its state is set up by ``Session.__init__``)."""

    provider: Provider
    settings: SessionSettings
    _supervisor: Supervisor
    _lifecycle: LifecycleMachine
    _paused: bool
    _loop_thread: int | None
    _call_soon: Callable[..., object] | None

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
