"""Issue 4: a whole conversation between the client and the local server, over a real socket.

One call, as a user would make it: a text turn, a voice turn (synthesized
speech whose scripted transcript names the weather tool, so the server calls
``get_weather``, the registered tool answers and the follow-up answer quotes
its output), then a barge-in on a long answer of which 500 ms were heard.
Afterwards the server's conversation and the client's mirror must tell the
same story, item by item. Hanging up while caller audio is still going out
must close quietly (a regression test of a fixed engine bug).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from tests.e2e.helpers import (
    CHUNK_BYTES,
    SETTINGS,
    Recorder,
    Wire,
    collect_until,
    inworld,
    make_server,
    next_event,
    outputs_per_call,
    play_all,
    speech,
    stream_audio,
    summary,
)

pytestmark = pytest.mark.anyio

QUESTION = "What's the weather in Paris?"
LONG = "Tell me a long story about the sea, the ships and the lighthouse keepers of the north."
WEATHER = {"city": "Paris", "temp_c": 21, "sky": "sunny"}


def _is_turn_end(event: Any) -> bool:
    return isinstance(event, ev.TurnMetrics)


async def test_full_conversation_matches_the_server() -> None:
    server = make_server()
    wire = Wire()
    recorder = Recorder()
    calls: list[str] = []
    with anyio.fail_after(20):
        async with server.running():
            session = engine.Session(
                inworld(server),
                engine.SessionConfig(instructions="You are a travel assistant."),
                settings=SETTINGS,
                connector=wire,
            )
            session.on()(recorder)

            @session.tool
            async def get_weather(city: str) -> dict[str, Any]:
                """Current weather for a city.

                Args:
                    city: the city name.
                """
                calls.append(city)
                return {**WEATHER, "city": city}

            async with session.connect():
                stream = session.events()

                # 1. a text turn (heard in full)
                await session.send_text("Hello there!")
                play_all(session, await collect_until(stream, _is_turn_end))

                # 2. a voice turn that calls the tool; the follow-up answer quotes the output
                server.say_next(QUESTION)
                await stream_audio(session, speech(1.2))
                voice_turn = await collect_until(stream, _is_turn_end)
                play_all(session, voice_turn)

                # 3. a long answer, of which the user hears 500 ms before cutting in
                await session.send_text(LONG)
                long_turn = await collect_until(stream, _is_turn_end)
                (long_item,) = {e.item_id for e in long_turn if isinstance(e, ev.AudioOut)}
                session.audio_played(long_item, 500)
                server.say_next("Stop, please.")
                await stream_audio(session, speech(0.8))
                interrupted = await next_event(stream, ev.Interrupted)
                last_turn = await collect_until(stream, _is_turn_end)
                history = session.history
            server_items = server.connections[0].conversation.items

    # The voice turn: transcript, one tool call with the parsed city, the output quoted back.
    finals = [e.text for e in voice_turn if isinstance(e, ev.UserTranscript) and e.final]
    assert finals == [QUESTION]
    (call,) = [e for e in voice_turn if isinstance(e, ev.ToolCall)]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert calls == ["Paris"]
    (result,) = [e for e in voice_turn if isinstance(e, ev.ToolResult)]
    assert json.loads(result.output) == WEATHER
    answer = [e.text for e in voice_turn if isinstance(e, ev.AssistantTranscript) and e.final][-1]
    assert result.output in answer

    # The barge-in: what was acknowledged, not the wall clock; the server truncated the item.
    assert (interrupted.item_id, interrupted.played_ms) == (long_item, 500)
    truncates = wire.connections[0].of_type("conversation.item.truncate")
    assert [(t["item_id"], t["audio_end_ms"]) for t in truncates] == [(long_item, 500)]
    assert server.connections[0].conversation.audio_ms[long_item] == 500
    assert "conversation.item.truncated" in server.connections[0].sent_types
    assert [e.text for e in last_turn if isinstance(e, ev.UserTranscript) and e.final] == ["Stop, please."]

    # Nothing went wrong along the way.
    assert recorder.of_type(ev.Error) == []
    assert len(recorder.of_type(ev.TurnMetrics)) == 4

    # The two conversations: same items, same order, same words; the cut item is the one
    # place they may differ (the server cuts by characters, the mirror by whole words).
    ours, theirs = summary(history), summary(server_items)
    assert [row[:4] for row in ours] == [row[:4] for row in theirs]
    kinds = [(row[1], row[2]) for row in ours]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    for mine, server_row in zip(ours, theirs, strict=True):
        if mine[0] == long_item:
            assert server_row[4].startswith(mine[4])
            assert 0 < len(server_row[4]) < len(f"You said: {LONG}")
        else:
            assert mine == server_row
    words = [row[4] for row in ours]
    assert words[0] == "Hello there!"
    assert words[2] == QUESTION
    assert json.loads(words[4]) == WEATHER
    assert result.output in words[5]
    assert words[8] == "Stop, please."

    # Every function call on the server has exactly one output.
    assert outputs_per_call(server_items) == {call.call_id: 1}


async def test_leaving_while_audio_is_going_out_closes_quietly() -> None:
    server = make_server()
    recorder = Recorder()
    # A stalled uplink and a one-message outbox: the audio actor is left waiting in outbox.send().
    wire = Wire(stall_audio_on=(0,))
    settings = engine.SessionSettings(close_timeout=0.5, outbox_size=1)
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(inworld(server), settings=settings, connector=wire)
            session.on()(recorder)
            async with session.connect():
                await session.send_audio(bytes(CHUNK_BYTES * 4))
                await wire.audio_stalled.wait()
                await anyio.wait_all_tasks_blocked()
                assert session.statistics().outbox_queued == 1
                # The user hangs up while their audio is still going out.
    assert session.state is engine.State.CLOSED
    assert [e.reason for e in recorder.of_type(ev.Closed)] == ["closed by the application"]
