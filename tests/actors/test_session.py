"""The Session against a scripted realtime peer on a real 127.0.0.1 WebSocket.

Lifecycle and the text turn live here: the handshake (URL, key, credentials),
the first ``session.update``, readiness, a refused handshake, a full text turn,
event streams versus callbacks, the diagram, one ``response.create`` in
flight, commands after close, and a bounded close against servers that never
answer the close handshake. Audio,
barge-in and callbacks are in ``test_audio.py``, tools in ``test_tools.py``,
credential hygiene in ``test_secrets.py``.

Every test runs under asyncio and trio, bounded by ``fail_after``; nothing
sleeps to wait for something it can await.
"""

from __future__ import annotations

import base64
import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import engine
from engine.events import (
    AssistantTranscript,
    AudioOut,
    Closed,
    ResponseDone,
    ResponseStarted,
    SessionReady,
    StateChanged,
    ToolCall,
)
from tests.actors.helpers import KEY, after, collect_until, make_session, next_event, of_type, round_trip
from tests.actors.peer import Peer, audio_b64, audio_response, mute_server, response_head, running_peer

pytestmark = pytest.mark.anyio

READY = engine.State.SESSION_READY


# ---------------------------------------------------------------------- 1. connect and handshake


def _query(path: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(path)
    return parts.path, parse_qs(parts.query)


async def test_inworld_handshake_uses_a_fresh_key_and_basic_auth() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            for _ in range(2):
                session = make_session(peer)
                async with session.connect():
                    assert session.state is READY
    assert len(peer.paths) == 2
    keys = []
    for path, headers in zip(peer.paths, peer.headers, strict=True):
        route, query = _query(path)
        assert route == "/session"
        assert query["protocol"] == ["realtime"]
        assert len(query["key"]) == 1
        keys.append(query["key"][0])
        assert headers["authorization"] == f"Basic {KEY}"
    assert keys[0] != keys[1], "each connect must use a fresh session key"


@pytest.mark.parametrize(
    ("make_provider", "route", "query_keys"),
    [
        pytest.param(lambda port: engine.Inworld(
            api_key=KEY, url=f"ws://127.0.0.1:{port}/session", auth="bearer"
        ), "/session", {"key", "protocol"}, id="inworld-bearer"),
        pytest.param(lambda port: engine.OpenAI(
            api_key=KEY, url=f"ws://127.0.0.1:{port}/v1/realtime"
        ), "/v1/realtime", {"model"}, id="openai"),
    ],
)  # fmt: skip
async def test_bearer_handshake(make_provider: Any, route: str, query_keys: set[str]) -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, provider=make_provider(peer.port))
            async with session.connect():
                assert session.state is READY
    path, query = _query(peer.paths[0])
    assert path == route
    assert set(query) == query_keys
    if "model" in query:
        assert query["model"] == [session.provider.model]
    assert peer.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_first_message_is_session_update_with_config_and_inworld_defaults() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, engine.SessionConfig(instructions="speak like a pirate"))
            async with session.connect():
                pass
    first = peer.received[0]
    assert first["type"] == "session.update"
    wire = first["session"]
    assert wire["instructions"] == "speak like a pirate"
    assert wire["audio"]["output"]["voice"] == "Clive"
    assert wire["providerData"]["auto_tool_response"] is False
    assert wire["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


async def test_connect_returns_only_after_session_updated() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            peer.on("session.update")(lambda _: [])  # the test answers by hand
            session = make_session(peer)
            updated_sent = False
            inside = anyio.Event()
            leave = anyio.Event()

            async def body() -> None:
                async with session.connect():
                    assert updated_sent, "connect() returned before session.updated"
                    assert session.state is READY
                    inside.set()
                    await leave.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(body)
                update = await peer.wait_for("session.update")
                assert not inside.is_set()
                assert session.state is engine.State.CONNECTING
                updated_sent = True
                await peer.push([{"type": "session.updated", "session": update["session"]}])
                await inside.wait()
                leave.set()


async def test_refused_handshake_raises_handshake_error() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            peer.refuse = (401, "invalid credentials")
            session = make_session(peer)
            with pytest.raises(engine.HandshakeError) as caught:
                async with session.connect():
                    pytest.fail("the body ran although the handshake was refused")
    assert caught.value.status == 401
    assert caught.value.is_auth_failure
    assert session.state is engine.State.CLOSED
    assert peer.paths == []  # refused before any session was opened


async def test_refused_handshake_never_runs_the_body() -> None:
    ran = False
    with anyio.fail_after(5):
        async with running_peer() as peer:
            peer.refuse = (401, "invalid credentials")
            session = make_session(peer)
            with pytest.raises(engine.HandshakeError):
                async with session.connect():
                    ran = True
    assert not ran


# ---------------------------------------------------------------------- 2. a text turn


async def test_text_turn() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                stream = session.events()
                await session.send_text("What is the weather?")
                events = await collect_until(
                    stream, lambda e: isinstance(e, StateChanged) and e.old is engine.State.RESPONDING
                )
                history = session.history

    # The wire: the user item, then the request for a response.
    assert peer.sent_types() == ["session.update", "conversation.item.create", "response.create"]
    item = peer.received[1]["item"]
    assert item["type"] == "message"
    assert item["role"] == "user"
    assert item["content"] == [{"type": "input_text", "text": "What is the weather?"}]

    # Audio: one AudioOut per delta, same bytes.
    audio = of_type(events, AudioOut)
    assert [a.pcm for a in audio] == [base64.b64decode(audio_b64(60))] * 3
    assert [len(a.pcm) for a in audio] == [2880] * 3
    assert {a.response_id for a in audio} == {"resp_1"}
    assert all(a.sample_rate == 24000 for a in audio)

    # Transcript: interim pieces accumulate, then the final text.
    transcripts = of_type(events, AssistantTranscript)
    interim = [t for t in transcripts if not t.final]
    final = [t for t in transcripts if t.final]
    assert len(interim) == 3
    assert "".join(t.delta for t in interim) == "Hello from the peer"
    assert interim[-1].text == "Hello from the peer"
    assert [t.text for t in final] == ["Hello from the peer"]

    # The end of the response, with usage.
    (done,) = of_type(events, ResponseDone)
    assert done.response_id == "resp_1"
    assert done.status == "completed"
    assert done.usage is not None
    assert (done.usage.total_tokens, done.usage.input_tokens, done.usage.output_tokens) == (12, 5, 7)

    # Whose turn it is: responding, then back to ready, after the response is done.
    changes = [(c.old, c.new) for c in of_type(events, StateChanged)]
    assert changes == [(READY, engine.State.RESPONDING), (engine.State.RESPONDING, READY)]
    assert events.index(done) < len(events) - 1

    # The local mirror of the conversation.
    texts = [(i.role, i.text) for i in history if i.type == "message"]
    assert texts == [("user", "What is the weather?"), ("assistant", "Hello from the peer")]


# ---------------------------------------------------------------------- streams, diagram, closed


async def test_events_stream_matches_a_catch_all_callback() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            from_callback: list[Any] = []
            session.on()(from_callback.append)
            stream = session.events()  # before connect: sees everything, as the callback does
            from_stream: list[Any] = []

            async def drain() -> None:
                async for event in stream:
                    from_stream.append(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                async with session.connect():
                    await session.send_text("hi")
                    await session.wait_for(ResponseDone, timeout=3)
                    await session.send_text("again")
                    await session.wait_for(ResponseDone, timeout=3)
    assert len(from_stream) > 20
    assert from_stream == from_callback
    assert isinstance(from_stream[0], StateChanged)
    assert isinstance(from_stream[1], SessionReady)
    assert isinstance(from_stream[-1], Closed)


async def test_diagram_marks_the_current_state() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                text = session.diagram()
    assert "class engine__conversation__session_ready s_active" in text
    assert "class engine__response__idle s_active" in text
    assert "class engine__conversation__responding s_active" not in text


async def test_commands_after_close_raise_session_closed() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                pass
            assert session.state is engine.State.CLOSED
            commands: list[Any] = [
                lambda: session.send_text("too late"),
                lambda: session.send_audio(b"\x00\x00" * 100),
                session.commit_audio,
                session.clear_audio,
                session.create_response,
                session.cancel_response,
                session.interrupt,
                lambda: session.update(engine.SessionConfig(instructions="x")),
                lambda: session.wait_for(ResponseDone, timeout=1),
            ]
            for command in commands:
                with pytest.raises(engine.SessionClosed):
                    await command()
            assert [e async for e in session.events()] == []  # a stream opened after close ends at once
            await session.aclose()  # idempotent
            assert len(peer.paths) == 1


async def test_connecting_twice_is_refused() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                pass
            with pytest.raises(engine.EngineError):
                async with session.connect():
                    pytest.fail("a session connects once")


async def test_one_response_create_in_flight_later_requests_are_coalesced() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:

            @peer.on("response.create")
            def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
                if peer.responses == 0:
                    peer.responses += 1
                    return response_head("resp_1", "item_a1")  # the rest comes when the test says
                return peer.next_audio_response()

            session = make_session(peer)
            async with session.connect():
                stream = session.events()
                await session.send_text("one")
                await next_event(stream, ResponseStarted)
                await session.send_text("two")
                await session.create_response()
                await round_trip(session, peer)
                creates_while_busy = peer.sent_types().count("response.create")
                rest = audio_response("resp_1", "item_a1", "first answer")[len(response_head("r", "i")) :]
                await peer.push(rest)
                await next_event(stream, ResponseDone, lambda e: e.response_id == "resp_2")
                await round_trip(session, peer)
    assert creates_while_busy == 1
    assert after(peer, "session.update") == [
        "conversation.item.create",
        "response.create",
        "conversation.item.create",  # "two" goes out at once; its response waits
        "input_audio_buffer.clear",
        "response.create",  # one, for both requests, once resp_1 is done
        "input_audio_buffer.clear",
    ]


async def test_close_inside_the_block_lets_the_body_finish() -> None:
    reached_the_end = False
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                await session.aclose()
                assert session.state is engine.State.CLOSED
                with pytest.raises(engine.SessionClosed):
                    await session.send_text("too late")
                await anyio.lowlevel.checkpoint()  # e.g. the app saving the history
                reached_the_end = True
    assert reached_the_end


# ---------------------------------------------------------------------- 9. bounded close


@asynccontextmanager
async def _unanswering_server(kind: str) -> AsyncIterator[tuple[int, anyio.Event | None]]:
    if kind == "mute":
        async with mute_server() as mute:
            yield mute.port, mute.dropped
    else:
        peer = Peer()
        peer.silent_close = True
        async with running_peer(peer):
            yield peer.port, None


@pytest.mark.parametrize("kind", ["mute", "silent_close"])
async def test_close_is_bounded_and_wakes_every_waiter(kind: str) -> None:
    settings = engine.SessionSettings(close_timeout=0.5)
    with anyio.fail_after(5):
        async with _unanswering_server(kind) as (port, dropped):
            session = engine.Session(
                engine.Inworld(api_key=KEY, url=f"ws://127.0.0.1:{port}/session"), settings=settings
            )
            closed_by_callback: list[Closed] = []
            session.on(Closed)(closed_by_callback.append)
            outcome: dict[str, Any] = {}

            async def waiter(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                task_status.started()
                try:
                    await session.wait_for(ToolCall)
                except engine.SessionClosed:
                    outcome["wait_for"] = "SessionClosed"

            async def reader(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                stream = session.events()
                task_status.started()
                outcome["streamed"] = [event async for event in stream]

            async with anyio.create_task_group() as tg:
                with anyio.fail_after(2):
                    async with session.connect():
                        await tg.start(waiter)
                        await tg.start(reader)
                        leaving = anyio.current_time()
                    took = anyio.current_time() - leaving
            if dropped is not None:
                await dropped.wait()  # the socket is gone, not leaked

    assert took < settings.close_timeout + 0.5, f"close took {took:.2f}s"
    assert outcome["wait_for"] == "SessionClosed"
    streamed = outcome["streamed"]
    assert streamed, "the events() loop must see the close"
    assert isinstance(streamed[-1], Closed)
    assert len(closed_by_callback) == 1
    assert session.state is engine.State.CLOSED


async def test_a_close_the_caller_gave_up_on_still_completes() -> None:
    """Cancelling close() midway must not leave the session half closed (leaving connect() would hang)."""
    settings = engine.SessionSettings(close_timeout=0.5)
    with anyio.fail_after(5):
        async with _unanswering_server("mute") as (port, _):
            session = engine.Session(
                engine.Inworld(api_key=KEY, url=f"ws://127.0.0.1:{port}/session"), settings=settings
            )
            async with session.connect():
                with anyio.move_on_after(0.05):
                    await session.aclose()  # the server never answers the close handshake
            # Leaving the block returned: the abandoned close ran to its end.
    assert session.state is engine.State.CLOSED


# ---------------------------------------------------------------------- resource hygiene


async def test_closing_a_session_closes_its_streams() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with anyio.fail_after(5):
            async with running_peer() as peer:
                session = make_session(peer)
                async with session.connect():
                    stream = session.events()
                    await session.send_text("hi")
                    await session.wait_for(ResponseDone, timeout=3)
                assert [e async for e in stream]  # iterated to its end
        del session, stream
        gc.collect()
    unclosed = [str(w.message) for w in caught if str(w.message).startswith("Unclosed <MemoryObject")]
    assert unclosed == []


async def test_closing_a_healthy_session_is_prompt() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, settings=engine.SessionSettings())  # default deadlines
            async with session.connect():
                await session.send_text("hi")
                await session.wait_for(ResponseDone, timeout=3)
                leaving = anyio.current_time()
            took = anyio.current_time() - leaving
    assert took < 0.5, f"closing against a server that answers at once took {took:.2f}s"
