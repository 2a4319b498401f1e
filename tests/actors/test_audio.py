"""Audio in both directions, barge-in and callbacks, against the scripted peer.

Caller audio: re-chunked to 60 ms appends in order, held until the session is
ready, flushed before a manual commit, discarded while paused; a server-VAD
turn answered without any ``response.create``. Assistant audio: a barge-in
drops what is queued behind a slow player and everything that arrives later,
and ``response.cancel`` is sent only when the server will not cancel by
itself. Callbacks: a slow one delays nobody, a failing one is reported.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import engine
from engine.events import (
    AssistantTranscript,
    AudioOut,
    Error,
    Interrupted,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    StateChanged,
    UserTranscript,
)
from tests.actors.helpers import (
    after,
    collect_until,
    decoded_appends,
    make_session,
    next_event,
    of_type,
    round_trip,
)
from tests.actors.peer import (
    audio_deltas,
    audio_response,
    response_done,
    response_head,
    running_peer,
    vad_turn,
)

pytestmark = pytest.mark.anyio

READY = engine.State.SESSION_READY
RESPONDING = engine.State.RESPONDING
CHUNK = 2880  # 60 ms of 24 kHz PCM16 mono
APPEND = "input_audio_buffer.append"
MANUAL = engine.SessionConfig(instructions="be brief", turn_detection=None)


def pcm_pattern(size: int) -> bytes:
    """Audio whose bytes betray any reordering, loss or duplication."""
    return bytes(i * 7 % 251 for i in range(size))


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in pieces of ``sizes`` (which must add up to its length)."""
    assert sum(sizes) == len(data)
    out, start = [], 0
    for size in sizes:
        out.append(data[start : start + size])
        start += size
    return out


ODD_SIZES = [1, 999, 2881, 17, 4001, 3000, 1101]  # 12,000 bytes = 250 ms


# ---------------------------------------------------------------------- 3. caller audio


async def test_audio_is_rechunked_to_60ms_in_order_and_the_tail_flushed_on_commit() -> None:
    pcm = pcm_pattern(12_000)
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, MANUAL)
            async with session.connect():
                for piece in cut(pcm, ODD_SIZES):
                    await session.send_audio(piece)
                await peer.wait_for(APPEND, 4)
                streamed = decoded_appends(peer)
                await session.commit_audio()
                await peer.wait_for("input_audio_buffer.commit")
                await round_trip(session, peer)
                sent = session.statistics().audio_chunks_sent

    # While streaming: whole 60 ms chunks only, in order; the 20 ms tail waits.
    assert [len(c) for c in streamed] == [CHUNK] * 4
    assert b"".join(streamed) == pcm[: 4 * CHUNK]
    # The commit flushes the tail first, so no word is left behind.
    chunks = decoded_appends(peer)
    assert [len(c) for c in chunks] == [CHUNK] * 4 + [480]
    assert b"".join(chunks) == pcm
    assert after(peer, "session.update") == [APPEND] * 5 + [
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
    ]
    assert sent == 5


async def test_audio_sent_before_ready_is_held_and_delivered_after_the_setup() -> None:
    pcm = pcm_pattern(6_000)
    with anyio.fail_after(5):
        async with running_peer() as peer:
            peer.on("session.update")(lambda _: [])  # the test says when the session is ready
            session = make_session(peer, MANUAL, history=[{"role": "user", "content": "earlier"}])
            finish = anyio.Event()

            async def body() -> None:
                async with session.connect():
                    await finish.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(body)
                update = await peer.wait_for("session.update")
                for piece in cut(pcm, [1001, 4999]):
                    await session.send_audio(piece)
                await anyio.wait_all_tasks_blocked()  # audio-in has chunked what it was given
                assert peer.sent_types() == ["session.update"]
                await peer.push([{"type": "session.updated", "session": update["session"]}])
                await peer.wait_for(APPEND, 2)
                await session.commit_audio()
                await peer.wait_for("input_audio_buffer.commit")
                finish.set()

    assert peer.sent_types() == [
        "session.update",
        "conversation.item.create",  # the initial history comes first
        APPEND,
        APPEND,
        APPEND,
        "input_audio_buffer.commit",
    ]
    assert peer.received[1]["item"]["content"] == [{"type": "input_text", "text": "earlier"}]
    chunks = decoded_appends(peer)
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 240]
    assert b"".join(chunks) == pcm  # nothing dropped


async def test_commit_before_ready_follows_the_held_audio() -> None:
    pcm = pcm_pattern(6_000)
    with anyio.fail_after(5):
        async with running_peer() as peer:
            peer.on("session.update")(lambda _: [])
            session = make_session(peer, MANUAL)
            finish = anyio.Event()

            async def body() -> None:
                async with session.connect():
                    await finish.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(body)
                update = await peer.wait_for("session.update")
                await session.send_audio(pcm)
                await session.commit_audio()  # a push-to-talk release while still connecting
                await peer.push([{"type": "session.updated", "session": update["session"]}])
                await peer.wait_for("input_audio_buffer.commit")
                await peer.wait_for(APPEND, 3)
                finish.set()

    assert after(peer, "session.update") == [APPEND, APPEND, APPEND, "input_audio_buffer.commit"]


async def test_paused_audio_is_discarded() -> None:
    marker = bytes([9, 0]) * (CHUNK // 2)
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, MANUAL)
            async with session.connect():
                session.pause_audio_input(True)
                await session.send_audio(pcm_pattern(12_000))
                session.pause_audio_input(False)
                await session.send_audio(marker)
                await session.commit_audio()
                await peer.wait_for("input_audio_buffer.commit")
    assert decoded_appends(peer) == [marker]


async def test_server_vad_turn_is_answered_without_response_create() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:

            @peer.on(APPEND)
            def hear(_: dict[str, Any]) -> list[dict[str, Any]]:
                # After 180 ms of speech the server's VAD plays a whole turn and answers it.
                if len(peer.of_type(APPEND)) != 3:
                    return []
                return vad_turn("item_u1", ["Hello ", "there"]) + audio_response(
                    "resp_v1", "item_av1", "Hi, how can I help?"
                )

            session = make_session(peer)
            async with session.connect():
                stream = session.events()
                for piece in cut(pcm_pattern(12_000), ODD_SIZES):
                    await session.send_audio(piece)
                events = await collect_until(
                    stream, lambda e: isinstance(e, StateChanged) and e.old is RESPONDING
                )
                await round_trip(session, peer)
                history = session.history

    (started,) = of_type(events, SpeechStarted)
    assert (started.item_id, started.audio_start_ms) == ("item_u1", 100)
    (stopped,) = of_type(events, SpeechStopped)
    assert (stopped.item_id, stopped.audio_end_ms) == ("item_u1", 900)
    transcripts = [(t.text, t.final) for t in of_type(events, UserTranscript)]
    assert transcripts == [("Hello ", False), ("Hello there", False), ("Hello there", True)]
    assert all(t.item_id == "item_u1" for t in of_type(events, UserTranscript))
    assert len(of_type(events, AudioOut)) == 3
    (done,) = of_type(events, ResponseDone)
    assert (done.response_id, done.status) == ("resp_v1", "completed")
    changes = [(c.old, c.new) for c in of_type(events, StateChanged)]
    assert changes == [
        (READY, engine.State.USER_SPEAKING),
        (engine.State.USER_SPEAKING, RESPONDING),
        (RESPONDING, READY),
    ]
    # The server answered by itself: the client never asked.
    assert "response.create" not in peer.sent_types()
    assert [(i.role, i.text) for i in history] == [
        ("user", "Hello there"),
        ("assistant", "Hi, how can I help?"),
    ]


# ---------------------------------------------------------------------- 7. barge-in


def _speech_started(item: str = "item_u2") -> list[dict[str, Any]]:
    return [{"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 1500}]


def _cancelled(rid: str, item: str) -> list[dict[str, Any]]:
    """How the server closes out a cut response (docs/protocol.md §6.4 step 2)."""
    audio_done = {"type": "response.output_audio.done", "response_id": rid, "item_id": item}
    return [audio_done, *response_done(rid, "cancelled")]


async def test_barge_in_drops_queued_and_late_audio_without_cancel() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            playing = anyio.Event()
            release = anyio.Event()
            finished = anyio.Event()
            played: list[AudioOut] = []

            @session.on(AudioOut, ResponseDone)
            async def speaker(event: AudioOut | ResponseDone) -> None:
                if isinstance(event, ResponseDone):
                    finished.set()  # everything queued before it has been handled
                    return
                played.append(event)
                if len(played) == 1:
                    playing.set()
                    await release.wait()  # a player stuck on its first chunk

            async with session.connect():
                stream = session.events()
                await peer.push(response_head("resp_x", "item_x") + audio_deltas("resp_x", "item_x", 20))
                await playing.wait()
                await peer.push(_speech_started())
                interrupted = await next_event(stream, Interrupted)
                await peer.push(audio_deltas("resp_x", "item_x", 5) + _cancelled("resp_x", "item_x"))
                rest = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                release.set()
                await finished.wait()
                await round_trip(session, peer)

    assert (interrupted.response_id, interrupted.item_id) == ("resp_x", "item_x")
    assert len(played) == 1, f"{len(played) - 1} chunks of the cut response were played after Interrupted"
    assert of_type(rest, AudioOut) == []  # the late deltas were dropped too
    assert rest[-1].status == "cancelled"
    # interrupt_response is on by default: the server cancels, the client must not.
    assert "response.cancel" not in peer.sent_types()


async def test_barge_in_sends_cancel_when_the_server_will_not() -> None:
    config = engine.SessionConfig(
        instructions="be brief", turn_detection=engine.SemanticVad(interrupt_response=False)
    )
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, config)
            async with session.connect():
                stream = session.events()
                await peer.push(response_head("resp_y", "item_y") + audio_deltas("resp_y", "item_y", 3))
                await next_event(stream, AudioOut)
                await peer.push(_speech_started())
                interrupted = await next_event(stream, Interrupted)
                cancel = await peer.wait_for("response.cancel")
                await peer.push(audio_deltas("resp_y", "item_y", 2) + _cancelled("resp_y", "item_y"))
                rest = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
    assert interrupted.response_id == "resp_y"
    assert cancel["response_id"] == "resp_y"
    assert len(peer.of_type("response.cancel")) == 1
    assert of_type(rest, AudioOut) == []


async def test_interrupt_sends_cancel() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                stream = session.events()
                await peer.push(response_head("resp_z", "item_z") + audio_deltas("resp_z", "item_z", 3))
                await next_event(stream, ResponseStarted)
                await session.interrupt()
                interrupted = await next_event(stream, Interrupted)
                cancel = await peer.wait_for("response.cancel")
                await peer.push(audio_deltas("resp_z", "item_z", 2) + _cancelled("resp_z", "item_z"))
                rest = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
    assert interrupted.response_id == "resp_z"
    assert cancel["response_id"] == "resp_z"
    assert of_type(rest, AudioOut) == []


# ---------------------------------------------------------------------- 8. callbacks


async def test_a_slow_callback_does_not_delay_audio() -> None:
    chunks = 6
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            finished_slowly: list[Any] = []
            arrivals: list[float] = []
            all_audio = anyio.Event()

            @session.on(UserTranscript, AssistantTranscript)
            async def slow(event: Any) -> None:
                await anyio.sleep(1)  # the point of the test: this callback is slow
                finished_slowly.append(event)

            @session.on(AudioOut)
            def record(event: AudioOut) -> None:
                arrivals.append(anyio.current_time())
                if len(arrivals) == chunks:
                    all_audio.set()

            async with session.connect():
                start = anyio.current_time()
                await peer.push(
                    vad_turn("item_u1", ["Hello ", "there"])
                    + audio_response("resp_s", "item_s", "a rather long answer", chunks=chunks)
                )
                await all_audio.wait()
                audio_took = arrivals[-1] - start
                slow_done_by_then = len(finished_slowly)
    # 10 transcript events queue 10 s of slow work; the audio must not wait behind them.
    assert audio_took < 0.5, f"audio took {audio_took:.2f}s behind a slow callback"
    assert slow_done_by_then == 0


async def test_a_failing_callback_is_reported_and_the_session_goes_on() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)

            @session.on(ResponseStarted)
            def broken(event: ResponseStarted) -> None:
                raise RuntimeError("callback bug 17")

            async with session.connect():
                stream = session.events(Error, ResponseDone)
                await session.send_text("first")
                first = await collect_until(stream, lambda e: isinstance(e, Error))
                if not of_type(first, ResponseDone):
                    first += await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                await session.send_text("second")
                second = await collect_until(stream, lambda e: isinstance(e, ResponseDone))
                assert session.state is READY

    (error,) = of_type(first, Error)
    assert error.source == "callback"
    assert "callback bug 17" in error.message
    assert not error.fatal
    assert of_type(first, ResponseDone)[0].response_id == "resp_1"
    assert second[-1].response_id == "resp_2"
    assert second[-1].status == "completed"
