"""The Session's public surface in trio's terms, against the scripted peer on 127.0.0.1.

``aclose()`` (and its alias ``close()``), a checkpoint in every async call,
``send_audio_nowait`` from the loop and from a foreign thread with its
overflow policy, ``statistics()`` as a frozen record, ``tool()`` keeping the
function, ``publish()`` for application events, and the lifecycle machine as
the session moves through it (rollover included). Both backends, each test
bounded by ``fail_after``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import engine
from engine.actors.audio_in import AudioIn
from engine.events import Reconnected, Reconnecting, ResponseDone
from engine.protocol.config import AudioFormat
from tests.actors.helpers import make_session, next_event, round_trip
from tests.actors.peer import audio_response, response_head, running_peer

pytestmark = pytest.mark.anyio

L = engine.Lifecycle


async def test_lifecycle_new_open_closed_and_aclose_with_its_alias() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            assert session.lifecycle is L.NEW
            async with session.connect():
                assert session.lifecycle is L.OPEN
                await session.aclose()
                assert session.lifecycle is L.CLOSED
                with pytest.raises(engine.SessionClosed):
                    await session.send_text("too late")
                await session.close()  # the alias, idempotent
            assert session.lifecycle is L.CLOSED


async def test_watch_steps_sees_every_machine_move_from_the_lifecycle_and_the_core() -> None:
    moves: list[tuple[str, str, str]] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            session.watch_steps(lambda machine, old, new: moves.append((machine, old, new)))
            async with session.connect():
                await session.send_text("hi")  # a text turn: the response slot moves
                await session.wait_for(ResponseDone, timeout=3)
                snapshot = dict(session.states)
                session.watch_steps(None)
                before_close = len(moves)
    assert moves[0] == ("lifecycle", "new", "connecting")
    assert ("conversation", "connecting", "session_ready") in moves
    assert any(machine == "response" for machine, _, _ in moves)
    for machine, state in snapshot.items():  # the hook saw each machine reach where it stood
        last = [new for m, _, new in moves if m == machine]
        assert not last or last[-1] == state, (machine, last, state)
    assert len(moves) == before_close  # stopped: the close moved the lifecycle unseen


async def test_a_speaker_acknowledging_after_close_is_ignored_even_when_recording(tmp_path: Path) -> None:
    recording = tmp_path / "call.jsonl"
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, record=recording)
            async with session.connect():
                pass
            lines = recording.read_text().count("\n")
            session.audio_played("item_1", 120.0)  # the recording is closed: nothing written, no error
    assert recording.read_text().count("\n") == lines


async def test_a_cancelled_aclose_still_closes() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await session.aclose()
                assert scope.cancelled_caught
                assert session.lifecycle is L.CLOSED


async def test_every_async_command_is_a_cancel_point_and_does_nothing_when_cancelled() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                await round_trip(session, peer)
                before = peer.sent_types()
                commands: list[Callable[[], Awaitable[None]]] = [
                    lambda: session.send_text("hello"),
                    lambda: session.send_audio(b"\x00\x00" * 2400),
                    session.commit_audio,
                    session.clear_audio,
                    session.create_response,
                    session.cancel_response,
                    session.interrupt,
                    lambda: session.update(engine.SessionConfig(instructions="x")),
                    session.reset,
                ]
                for command in commands:
                    with anyio.CancelScope() as scope:
                        scope.cancel()
                        await command()
                    assert scope.cancelled_caught, command
                await round_trip(session, peer)
                marker = peer.sent_types()[len(before) :]
                assert set(marker) == {"input_audio_buffer.clear"}  # only round_trip's own markers
                assert session.lifecycle is L.OPEN


async def test_send_audio_nowait_from_the_loop_and_from_another_thread() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            chunk = session.settings.audio_chunk_ms * 48  # bytes of one chunk at 24 kHz PCM16
            async with session.connect():
                session.send_audio_nowait(b"\x01\x00" * (chunk // 2))
                buffer = bytearray(b"\x02\x00" * (chunk // 2))
                await anyio.to_thread.run_sync(session.send_audio_nowait, buffer)
                buffer[:] = b"\xff" * len(buffer)  # the sound library reuses its buffer: the audio was copied
                await anyio.to_thread.run_sync(session.send_audio_nowait, b"")  # hop once more: ordered
                await round_trip(session, peer)
                with pytest.raises(TypeError, match="send_audio_nowait"):
                    session.send_audio_nowait("not audio")  # type: ignore[arg-type]
            with pytest.raises(engine.SessionClosed):
                session.send_audio_nowait(b"\x00\x00")
    sent = [base64.b64decode(m["audio"]) for m in peer.of_type("input_audio_buffer.append")]
    assert sent == [b"\x01\x00" * (chunk // 2), b"\x02\x00" * (chunk // 2)]


class _Idle:
    """A starter that never runs what it is given: the audio-in actor stays behind."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def start_soon(self, func: Any, *args: Any, name: object = None) -> None:
        self.args.extend(args)


async def test_send_audio_nowait_drops_the_newest_when_the_actor_is_behind_and_reports_once() -> None:
    reports: list[str] = []
    audio = AudioIn(
        AudioFormat(type="audio/pcm", rate=24000),
        None,
        report_drop=lambda _: None,
        report_overflow=lambda: reports.append("overflow"),
        inbox_size=2,
    )
    idle = _Idle()
    audio.start_in(idle)
    chunk = b"\x00" * audio.chunk_bytes
    for _ in range(5):
        audio.put_nowait(chunk)  # the gate is closed: everything goes to the (stalled) actor
    assert audio.dropped_chunks == 3
    assert reports == ["overflow"]  # one report per overflow, not per chunk
    with pytest.raises(TypeError):
        audio.put_nowait(None)  # type: ignore[arg-type]
    audio.close()
    for receive in idle.args:
        receive.close()


async def test_statistics_is_a_frozen_record() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            assert session.statistics() == engine.SessionStatistics()  # all zero before connect
            async with session.connect():
                await session.send_text("hello")
                await session.wait_for(ResponseDone, timeout=4)
                stats = session.statistics()
    assert stats.messages_sent >= 3  # session.update, the item, response.create
    assert all(isinstance(value, int) for value in attrs.astuple(stats))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.messages_sent = 0  # type: ignore[misc]


async def test_tool_decorators_return_the_function_itself() -> None:
    session = engine.Session(engine.OpenAI(api_key="sk-test"))

    @session.tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    @session.tool(name="weather", timeout=5)
    async def forecast(city: str) -> str:
        """The weather in a city."""
        return city

    assert lookup("Paris") == "Paris"
    assert await forecast("Oslo") == "Oslo"
    assert sorted(session._tools) == ["lookup", "weather"]


@attrs.frozen
class Pressed:
    key: str


async def test_publish_delivers_an_application_event_to_callbacks_streams_and_waiters() -> None:
    seen: list[Any] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            session.on(Pressed)(seen.append)
            async with session.connect(), session.events(Pressed) as stream:
                async with anyio.create_task_group() as tg:

                    async def wait() -> None:
                        seen.append(("waited", await session.wait_for(Pressed, timeout=4)))

                    tg.start_soon(wait)
                    await anyio.wait_all_tasks_blocked()  # the waiter is registered
                    session.publish(Pressed(key="5"))
                assert await stream.__anext__() == Pressed(key="5")
    assert Pressed(key="5") in seen
    assert ("waited", Pressed(key="5")) in seen


async def test_a_due_rollover_waits_for_the_turn_then_rolls_over() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:

            @peer.on("response.create")
            def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
                peer.responses += 1
                return response_head(f"resp_{peer.responses}", f"item_{peer.responses}")  # held open

            session = make_session(peer)
            async with session.connect(), session.events() as stream:
                await session.send_text("a long turn")
                await next_event(stream, engine.events.ResponseStarted)
                await session._supervisor.on_rollover_due()  # the duration's timer, fired by hand
                assert session.lifecycle is L.ROLLOVER_DUE  # the turn is not cut
                assert len(peer.paths) == 1
                rest = audio_response("resp_1", "item_1", "the end")[len(response_head("r", "i")) :]
                await peer.push(rest)
                rolling = await next_event(stream, Reconnecting)
                assert rolling.delay == 0
                await next_event(stream, Reconnected)
                assert session.lifecycle is L.OPEN
    assert len(peer.paths) == 2
