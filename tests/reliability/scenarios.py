"""The fault scenarios of the reliability tests, as functions the tests (and the secret test) run.

Each scenario starts its own :class:`~engine.server.LocalServer` on
127.0.0.1, runs one session against it with the given API key (and, if asked,
a ``record=`` file), and returns an :class:`Outcome`: the session, its
observer, the server, and the exception that left ``connect()`` if one did.
The checks live in the tests; a scenario only drives. Every scenario is
bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import attrs

import engine
from engine import events as ev
from engine.server import LocalServer
from engine.server.faults import Faults
from engine.transports import TransportSettings
from tests.reliability.support import (
    CHUNK,
    KEY,
    RATE,
    TEXT_ANSWER,
    TEXT_QUESTION,
    VOICE_TRANSCRIPT,
    Observer,
    Run,
    converse,
    inworld,
    make_server,
    serving,
    settings,
    speak,
)

HANDSHAKE: list[dict[str, Any]] = [
    {"type": "session.created", "event_id": "ev_1", "session": {}},
    {"await": "session.update"},
    {"type": "session.updated", "event_id": "ev_2", "session": {}},
]
"""The start of a replayed connection: ``session.created``, then ``session.updated`` once asked."""

OVERSIZED = {
    "type": "response.output_audio_transcript.delta",
    "response_id": "resp_big",
    "item_id": "item_big",
    "output_index": 0,
    "content_index": 0,
    "delta": "word " * 2000,  # 10 KB, over a 4096-byte limit
}
NOT_BASE64 = {
    "type": "response.output_audio.delta",
    "response_id": "resp_bad",
    "item_id": "item_bad",
    "output_index": 0,
    "content_index": 0,
    "delta": "this is not base64!",
}


HANDSHAKE_THEN_CUT: list[dict[str, Any]] = [
    *HANDSHAKE,
    {"await": "input_audio_buffer.append"},
    {"type": "rate_limits.updated", "event_id": "ev_3", "rate_limits": []},
]
"""A handshake, then one more event once caller audio flows (cut after it with ``drop_after=3``)."""


@attrs.frozen
class Outcome:
    """What a scenario left behind."""

    session: engine.Session
    observer: Observer
    server: LocalServer
    raised: BaseException | None = None
    facts: dict[str, Any] = attrs.field(factory=dict)


def text_response(rid: str, text: str) -> list[dict[str, Any]]:
    """A whole text response, as raw server events for a replay."""
    item = {"id": f"item_{rid}", "type": "message", "role": "assistant"}
    final = {**item, "status": "completed", "content": [{"type": "output_text", "text": text}]}
    ids = {"response_id": rid, "output_index": 0}
    part = {**ids, "item_id": item["id"], "content_index": 0}
    return [
        {"type": "response.created", "response": {"id": rid, "status": "in_progress"}},
        {"type": "response.output_item.added", **ids, "item": {**item, "status": "in_progress"}},
        {"type": "response.output_text.delta", **part, "delta": text},
        {"type": "response.output_text.done", **part, "text": text},
        {"type": "response.output_item.done", **ids, "item": final},
        {"type": "response.done", "response": {"id": rid, "status": "completed", "output": [final]}},
    ]


def _session(
    server: LocalServer, key: str, record: Path | None, **overrides: Any
) -> tuple[engine.Session, Observer]:
    session = engine.Session(inworld(server, key), settings=settings(**overrides), record=record)
    return session, Observer(session)


async def silent_server(*, key: str = KEY, record: Path | None = None) -> Outcome:
    """The server goes silent after ``session.updated``; a turn is asked into the silence.

    Keep-alive (``keepalive_interval=0.1``, ``keepalive_timeout=0.2``) must find
    the dead socket; the session reconnects and the restored turn is answered.
    """
    keepalive = TransportSettings(keepalive_interval=0.1, keepalive_timeout=0.2, close_timeout=0.2)
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.inject(Faults(silent_after=3), index=0)
            session, observer = _session(server, key, record, transport=keepalive)
            async with session.connect():
                await session.send_text(TEXT_QUESTION)  # goes to the silent server
                await observer.answered(TEXT_ANSWER)
    return Outcome(session, observer, server)


async def oversized_message(*, key: str = KEY, record: Path | None = None) -> Outcome:
    """Connection 0 replays a 10 KB event to a client whose ``max_message_size`` is 4096 bytes."""
    small = TransportSettings(max_message_size=4096, keepalive_interval=None)
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.replay([*HANDSHAKE, OVERSIZED], index=0)
            session, observer = _session(server, key, record, transport=small)
            async with session.connect():
                await observer.until(lambda: bool(observer.of(ev.Reconnected)))
                await session.send_text(TEXT_QUESTION)
                await observer.answered(TEXT_ANSWER)
                state = session.state
    return Outcome(session, observer, server, facts={"state": state})


async def invalid_audio(*, key: str = KEY, record: Path | None = None) -> Outcome:
    """An audio delta that is not base64, then a normal text turn on the same socket."""
    script = [*HANDSHAKE, NOT_BASE64, {"await": "response.create"}, *text_response("resp_1", TEXT_ANSWER)]
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.replay(script, index=0)
            session, observer = _session(server, key, record)
            async with session.connect():
                await observer.until(lambda: bool(observer.errors))
                await session.send_text(TEXT_QUESTION)
                await observer.answered(TEXT_ANSWER)
                state = session.state
    return Outcome(session, observer, server, facts={"state": state})


async def close_while_reconnecting(
    *, backoff: float, key: str = KEY, record: Path | None = None, close_timeout: float = 0.5
) -> Outcome:
    """The socket is cut, every later handshake is refused (503); ``close()`` mid-reconnect.

    ``facts``: ``state`` before the close, ``elapsed`` (seconds ``close()``
    took), ``attempts`` (``Reconnecting`` events seen before the close).
    """
    policy = engine.ReconnectPolicy(max_attempts=10_000, initial_delay=backoff, multiplier=1, jitter=0)
    facts: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.inject(Faults(drop_at="response.created", close_code=None), index=0)
            session, observer = _session(server, key, record, reconnect=policy, close_timeout=close_timeout)
            async with session.connect():
                server.refuse_next(10_000, 503)  # every handshake from now on
                await session.send_text(TEXT_QUESTION)  # the server cuts the socket instead of answering
                wanted = 3 if backoff < 1 else 1
                await observer.until(lambda: len(observer.of(ev.Reconnecting)) >= wanted)
                facts["state"] = session.state
                facts["attempts"] = len(observer.of(ev.Reconnecting))
                started = anyio.current_time()
                await session.close()
                facts["elapsed"] = anyio.current_time() - started
                facts["closed_state"] = session.state
    return Outcome(session, observer, server, facts=facts)


async def refused_reconnect(
    *, final_status: int | None, key: str = KEY, record: Path | None = None
) -> Outcome:
    """The socket is cut; the next two handshakes get 503, the third ``final_status`` (or succeeds).

    With ``final_status=None`` the third attempt succeeds and the turn is
    answered; with 401 the session must give up at once (fatal), and
    ``connect()`` raises, which the outcome keeps in ``raised``.
    """
    raised: BaseException | None = None
    with anyio.fail_after(10):
        async with serving(make_server(expected_key=key)) as server:
            server.inject(Faults(drop_at="response.created", close_code=None), index=0)
            session, observer = _session(server, key, record)
            try:
                async with session.connect():
                    server.refuse_next(2, 503)
                    if final_status is not None:
                        server.refuse_next(1, final_status)
                    await session.send_text(TEXT_QUESTION)
                    if final_status is None:
                        await observer.answered(TEXT_ANSWER)
                    else:
                        await anyio.sleep_forever()  # a fatal error cancels the body
            except engine.EngineError as exc:
                raised = exc
    return Outcome(session, observer, server, raised=raised)


async def refused_handshake(*, key: str = KEY, record: Path | None = None) -> Outcome:
    """The very first handshake is refused with 401: ``connect()`` raises ``HandshakeError``."""
    raised: BaseException | None = None
    with anyio.fail_after(10):
        async with serving(make_server(expected_key=key)) as server:
            server.refuse_next(1, 401)
            session, observer = _session(server, key, record)
            try:
                async with session.connect():
                    pass
            except engine.HandshakeError as exc:
                raised = exc
    return Outcome(session, observer, server, raised=raised)


async def cut_conversation(
    faults: Faults, *, key: str = KEY, record: Path | None = None, limit: float = 5.0
) -> Run:
    """The scripted conversation (``support.converse``) with ``faults`` on connection 0."""
    with anyio.fail_after(limit):
        async with serving(make_server()) as server:
            server.inject(faults, index=0)
            return await converse(server, key=key, record=record)


async def audio_across_cut(*, key: str = KEY, record: Path | None = None) -> Outcome:
    """The socket is cut (1006) while the application streams silence one chunk at a time.

    Audio-in is emitting (usually waiting on the full outbox) when the socket
    goes. After ``Reconnected`` a text turn is asked and answered.
    ``facts["appended"]``: audio chunks connection 1 received.
    """
    silence = bytes(CHUNK)
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.replay(HANDSHAKE_THEN_CUT, index=0)
            server.inject(Faults(drop_after=3, close_code=None), index=0)
            session, observer = _session(server, key, record)
            async with session.connect():
                async with anyio.create_task_group() as tg:

                    async def microphone() -> None:
                        while not observer.of(ev.Reconnecting):
                            await session.send_audio(silence)

                    tg.start_soon(microphone)
                    await observer.until(lambda: bool(observer.of(ev.Reconnected)))
                await session.send_text(TEXT_QUESTION)
                await observer.answered(TEXT_ANSWER)
            appended = server.connections[1].received_types.count("input_audio_buffer.append")
    return Outcome(session, observer, server, facts={"appended": appended})


async def close_during_flush(*, key: str = KEY, record: Path | None = None) -> Outcome:
    """Close right after a reconnect, while the audio held during the gap is being sent.

    Connection 0 is cut after the handshake; connection 1 answers its
    handshake 0.3 s late while the application gives 4 s of audio (66 chunks
    held, more than the 64-message outbox). On ``Reconnected`` it closes at
    once. ``facts["elapsed"]``: seconds ``close()`` took.
    """
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.inject(Faults(drop_after=3, close_code=None), index=0)
            server.inject(Faults(delay={"session.updated": 0.3}), index=1)
            session, observer = _session(server, key, record)
            async with session.connect():
                await observer.until(lambda: bool(observer.of(ev.Reconnecting)))
                await session.send_audio(bytes(RATE * 2 * 4))
                await session.wait_for(ev.Reconnected, timeout=5)
                started = anyio.current_time()
                await session.close()
                elapsed = anyio.current_time() - started
    return Outcome(session, observer, server, facts={"elapsed": elapsed})


async def voice_cut_before_transcript(drop_at: str, *, key: str = KEY, record: Path | None = None) -> Outcome:
    """A text turn, then a voice turn whose socket is cut at ``drop_at`` (before its transcript).

    Returns once the first turn after the reconnect is over (its ``TurnMetrics``).
    """
    with anyio.fail_after(10):
        async with serving(make_server()) as server:
            server.inject(Faults(drop_at=drop_at, close_code=None), index=0)
            session, observer = _session(server, key, record)
            async with session.connect():
                await session.send_text(TEXT_QUESTION)
                await observer.answered(TEXT_ANSWER)
                server.say_next(VOICE_TRANSCRIPT)
                await speak(session)
                await observer.until(lambda: bool(observer.of(ev.Reconnected)))
                turns = len(observer.of(ev.TurnMetrics))
                await observer.until(lambda: len(observer.of(ev.TurnMetrics)) > turns)
    return Outcome(session, observer, server)
