"""Shared pieces of the reliability tests: settings, an event observer, the scripted conversation.

Everything runs against :class:`~engine.server.LocalServer` on 127.0.0.1 (port
0) through a real socket, under the running backend. Reconnects are instant
(``initial_delay=0``, no jitter) so a test can cut the socket hundreds of times.

The scripted conversation (:func:`converse`) is the one the cut-everywhere test
replays after every server event, and the secret test replays with a logged
key: a text turn, a tool turn (the local assistant calls ``get_weather`` when
the text says "weather"; its answer quotes the tool output) and a voice turn
(synthesized speech whose transcript is scripted with ``say_next``). Its
driver never re-sends anything after a drop: it only waits, on events, for the
expected answer to be in ``session.history`` with the session idle.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import engine
from engine import events as ev
from engine.demo import speech
from engine.protocol.items import Item
from engine.server import LocalServer
from engine.server.connection import ServerConnection
from tests.e2e.helpers import SERVER_SETTINGS as SERVER_SETTINGS  # re-exported
from tests.e2e.helpers import make_server as make_server  # re-exported

KEY = "sk-REL-0c4f1e"
"""A distinctive API key: the secret test looks for it everywhere."""

INSTANT = engine.ReconnectPolicy(initial_delay=0.0, jitter=0)

RATE = 24000
CHUNK = RATE * 2 * 60 // 1000
"""Bytes of one 60 ms chunk of 24 kHz PCM16 (the session's own chunk size)."""

TEXT_QUESTION, TEXT_ANSWER = "Hi", "You said: Hi."
TOOL_QUESTION, TOOL_ANSWER = "What's the weather in Paris?", "The result is sunny."
VOICE_TRANSCRIPT, VOICE_ANSWER = "Bye", "You said: Bye."
ANSWERS = (TEXT_ANSWER, TOOL_ANSWER, VOICE_ANSWER)

VOICE = speech(0.36)[: int(1.08 * RATE) * 2]
"""0.2 s of silence, 0.36 s of voiced tone, 0.52 s of silence (PCM16 mono, 24 kHz): 18 chunks.

The server's VAD ends the turn after 500 ms of silence, that is while reading
the last chunk, so the microphone has nothing left to send once the turn is
committed (a cut from then on never races with caller audio).
"""
VOICED = range(int(0.18 * RATE * 2), int(0.6 * RATE * 2))
"""Byte offsets of VOICE around its voiced part: the microphone paces these chunks."""


def settings(**overrides: Any) -> engine.SessionSettings:
    """Session settings for these tests: instant reconnects, short closes (override any field)."""
    options: dict[str, Any] = {"reconnect": INSTANT, "close_timeout": 0.5, "ready_timeout": 5.0}
    options.update(overrides)
    return engine.SessionSettings(**options)


@asynccontextmanager
async def serving(server: LocalServer) -> AsyncIterator[LocalServer]:
    """Run ``server`` on 127.0.0.1 (a free port) for the block; the block's own exception comes out bare."""
    async with server.running("127.0.0.1", 0):
        yield server


def inworld(server: LocalServer, key: str = KEY) -> engine.Inworld:
    """An Inworld provider (Basic auth with ``key``) pointed at ``server``."""
    return engine.Inworld(api_key=key, url=server.url())


def register_weather(session: engine.Session) -> None:
    """The tool of the scripted conversation."""

    @session.tool
    async def get_weather(city: str) -> str:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        return "sunny" if city == "Paris" else "unknown"


class Observer:
    """One callback for every event of a session.

    It plays the speaker: each ``AudioOut`` is acknowledged as played at once
    (``audio_played`` with the item's cumulative milliseconds), so the playback
    ledger never believes an old answer is still playing when the user speaks.
    It keeps every event, and wakes :meth:`until` after each one.
    """

    def __init__(self, session: engine.Session) -> None:
        self.session = session
        self.events: list[Any] = []
        self._played: dict[str, float] = {}
        self._changed = anyio.Event()
        session.on()(self)

    def __call__(self, event: Any) -> None:
        if isinstance(event, ev.AudioOut) and event.item_id is not None:
            done = self._played.get(event.item_id, 0.0) + event.duration_ms
            self._played[event.item_id] = done
            self.session.audio_played(event.item_id, done)
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, kind: type[Any]) -> list[Any]:
        """The events of ``kind`` seen so far, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def errors(self) -> list[ev.Error]:
        """Every ``Error`` event so far."""
        return self.of(ev.Error)

    async def until(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` holds, checking after each event. Raises if the session closes."""
        while not done():
            if self.of(ev.Closed):
                raise AssertionError(f"the session closed while waiting: {self.of(ev.Closed)}")
            await self._changed.wait()

    async def answered(self, text: str) -> None:
        """Wait until ``text`` is an assistant message of the history and the session is idle."""
        session = self.session

        def done() -> bool:
            idle = session.state is engine.State.SESSION_READY and session.phase is engine.Phase.IDLE
            return idle and any(i.role == "assistant" and i.text == text for i in session.history)

        await self.until(done)


async def speak(session: engine.Session, pcm: bytes = VOICE) -> None:
    """Send ``pcm`` like a microphone: 60 ms chunks, the voiced ones 10 ms apart (6x real time).

    Pacing the voiced part matters only when the socket is cut while the user
    speaks: what the session already wrote to the dead socket is lost (by
    design), what it receives after noticing the drop is held and sent after
    the restore, so the new server still hears the rest of the utterance.
    """
    for offset in range(0, len(pcm), CHUNK):
        await session.send_audio(pcm[offset : offset + CHUNK])
        if offset in VOICED:
            await anyio.sleep(0.01)


@attrs.frozen
class Run:
    """One scripted conversation: the session, what it emitted, and the server connections it used."""

    session: engine.Session
    observer: Observer
    connections: list[ServerConnection]


async def converse(
    server: LocalServer,
    *,
    key: str = KEY,
    record: Path | None = None,
    session_settings: engine.SessionSettings | None = None,
) -> Run:
    """The scripted conversation against ``server``: text, tool, voice; each turn answered.

    The driver sends each user turn once and then only waits (on events) for
    the turn's answer, whatever drops happen in between.
    """
    first = len(server.connections)
    session = engine.Session(
        inworld(server, key),
        engine.SessionConfig(instructions="Be terse."),
        settings=session_settings or settings(),
        record=record,
    )
    register_weather(session)
    observer = Observer(session)
    async with session.connect():
        await session.send_text(TEXT_QUESTION)
        await observer.answered(TEXT_ANSWER)
        await session.send_text(TOOL_QUESTION)
        await observer.answered(TOOL_ANSWER)
        server.say_next(VOICE_TRANSCRIPT)
        await speak(session)
        await observer.answered(VOICE_ANSWER)
    return Run(session=session, observer=observer, connections=server.connections[first:])


def conversation_pairs(items: Iterable[Item]) -> list[tuple[str, str]]:
    """A conversation as ``(role or type, text or call_id)`` pairs, for comparing both sides.

    The only normalisation is the one ``Item.text`` already does: it is the
    text of a text part and the transcript of an audio part. So a user voice
    turn (``input_audio`` with a transcript on the client, restored as
    ``input_text`` on a new server) and an assistant audio answer (restored as
    ``output_text``) compare equal on both sides. Nothing is left out: an
    assistant message cut before its first word is pruned by the engine before
    a restore, so an empty message on either side is a difference.
    """
    pairs: list[tuple[str, str]] = []
    for item in items:
        if item.type == "message":
            pairs.append((item.role or "?", item.text))
        else:
            pairs.append((item.type, item.call_id or "?"))
    return pairs


def outputs_per_call(items: Iterable[Item]) -> dict[str, int]:
    """For every ``function_call`` item: how many ``function_call_output`` items answer it."""
    items = list(items)
    return {
        call.call_id or "?": sum(
            1 for out in items if out.type == "function_call_output" and out.call_id == call.call_id
        )
        for call in items
        if call.type == "function_call"
    }


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: its text, repr, and traceback with the chain."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: the formatted text, each message, its raw args, its traceback."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(exception_text(record.exc_info[1]))
        if record.exc_text:
            parts.append(record.exc_text)
    return "\n".join(parts)


def shown_by(session: Any, events: list[Any], raised: BaseException | None) -> list[str]:
    """What a session, its events and its exception show to an application or a log."""
    shown = [
        repr(session),
        str(session),
        repr(session.provider),
        str(session.provider),
        str(session.provider.api_key),
        repr(session.provider.api_key),
        repr(session.config),
        str(session.statistics()),
    ]
    for event in events:
        if isinstance(event, ev.Error):
            shown += [event.message, repr(event)]
        elif isinstance(event, ev.Closed):
            shown += [event.reason, repr(event)]
            if event.error is not None:
                shown.append(event.error.message)
    if raised is not None:
        shown.append(exception_text(raised))
    return shown
