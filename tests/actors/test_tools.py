"""Tool calls against the scripted peer: schema, one output per call, one follow-up response.

The peer answers the first ``response.create`` with function calls
(docs/protocol.md §6.3) and every later one with an audio reply, so a test sees the
whole loop: call, tool run, ``function_call_output``, ``response.create``,
follow-up audio.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import engine
from engine.events import AudioOut, ResponseDone, SpeechStarted, ToolCall, ToolResult
from tests.actors.helpers import after, collect_until, make_session, of_type, round_trip
from tests.actors.peer import Peer, audio_response, function_call_response, running_peer, vad_turn

pytestmark = pytest.mark.anyio

Calls = list[tuple[str, str, str]]


def script_calls(peer: Peer, calls: Calls) -> dict[str, float]:
    """First ``response.create``: the function calls; later ones: the default audio reply."""
    sent: dict[str, float] = {}

    @peer.on("response.create")
    def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
        if "calls" not in sent:
            sent["calls"] = anyio.current_time()
            peer.responses += 1
            return function_call_response("resp_1", calls)
        return peer.next_audio_response("Here is what I found")

    return sent


def outputs(peer: Peer) -> list[dict[str, Any]]:
    """The ``function_call_output`` items the client sent, in order."""
    items = [m["item"] for m in peer.of_type("conversation.item.create")]
    return [i for i in items if i["type"] == "function_call_output"]


def is_final_done(event: Any) -> bool:
    return isinstance(event, ResponseDone) and event.response_id == "resp_2"


async def run_tool_turn(session: engine.Session, peer: Peer, text: str = "weather?") -> list[Any]:
    """Send ``text`` and collect events until the follow-up response is done."""
    async with session.connect():
        stream = session.events()
        await session.send_text(text)
        events = await collect_until(stream, is_final_done)
        await round_trip(session, peer)
    return events


# ---------------------------------------------------------------------- 4. one call


async def test_tool_call_output_and_follow_up_response() -> None:
    ran_with: list[str] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:
            script_calls(peer, [("call_1", "get_weather", '{"city":"Paris"}')])
            session = make_session(peer)

            @session.tool
            async def get_weather(city: str) -> dict[str, Any]:
                """Current weather in a city."""
                ran_with.append(city)
                return {"city": city, "sky": "sunny", "celsius": 21}

            events = await run_tool_turn(session, peer)

    # The schema, from the signature and docstring, went out with the session.
    (tool,) = peer.received[0]["session"]["tools"]
    assert {k: tool[k] for k in ("type", "name", "parameters")} == {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    assert tool["description"] == "Current weather in a city."

    assert ran_with == ["Paris"]
    (output,) = outputs(peer)
    assert output["call_id"] == "call_1"
    assert json.loads(output["output"]) == {"city": "Paris", "sky": "sunny", "celsius": 21}
    # Exactly one output, then exactly one response.create, and nothing more of either.
    types = peer.sent_types()
    assert types.count("response.create") == 2
    tail = after(peer, "response.create")
    assert tail == ["conversation.item.create", "response.create", "input_audio_buffer.clear"]

    (call,) = of_type(events, ToolCall)
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    (result,) = of_type(events, ToolResult)
    assert (result.call_id, result.name, result.is_error) == ("call_1", "get_weather", False)
    assert json.loads(result.output)["sky"] == "sunny"
    assert events.index(call) < events.index(result)
    # The follow-up audio response arrived.
    follow_up = [a for a in of_type(events, AudioOut) if a.response_id == "resp_2"]
    assert len(follow_up) == 3


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    threads: list[bool] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:
            script_calls(peer, [("call_t", "local_time", '{"zone":"Europe/Paris"}')])
            session = make_session(peer)

            @session.tool
            def local_time(zone: str) -> dict[str, str]:
                """The local time in a time zone."""
                threads.append(threading.current_thread() is threading.main_thread())
                return {"zone": zone, "time": "12:00"}

            events = await run_tool_turn(session, peer)

    assert threads == [False]
    (output,) = outputs(peer)
    assert json.loads(output["output"]) == {"zone": "Europe/Paris", "time": "12:00"}
    assert of_type(events, ToolResult)[0].is_error is False


# ---------------------------------------------------------------------- 5. parallel calls


async def test_parallel_calls_get_two_outputs_and_one_response_create() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            script_calls(
                peer, [("call_slow", "slow_lookup", '{"q":"a"}'), ("call_fast", "fast_lookup", '{"q":"b"}')]
            )
            session = make_session(peer)
            release = anyio.Event()

            @session.tool
            async def slow_lookup(q: str) -> dict[str, str]:
                """Slow."""
                await release.wait()  # released by the test once the fast answer is out
                return {"slow": q}

            @session.tool
            async def fast_lookup(q: str) -> dict[str, str]:
                """Fast."""
                return {"fast": q}

            async with session.connect():
                stream = session.events()
                await session.send_text("both please")
                await peer.wait_for("conversation.item.create", 2)  # the user text, then the fast output
                await round_trip(session, peer)
                only_fast = [o["call_id"] for o in outputs(peer)]
                creates_before_release = peer.sent_types().count("response.create")
                release.set()
                events = await collect_until(stream, is_final_done)
                await round_trip(session, peer)

    assert only_fast == ["call_fast"]
    assert creates_before_release == 1  # no follow-up while a call is still running
    assert [(o["call_id"], json.loads(o["output"])) for o in outputs(peer)] == [
        ("call_fast", {"fast": "b"}),
        ("call_slow", {"slow": "a"}),
    ]
    tail = after(peer, "response.create")
    assert tail.count("response.create") == 1
    assert tail.index("response.create") > max(
        i for i, t in enumerate(tail) if t == "conversation.item.create"
    )
    assert {r.call_id for r in of_type(events, ToolResult)} == {"call_fast", "call_slow"}


# ---------------------------------------------------------------------- 6. failing tools


def _raises(session: engine.Session) -> None:
    @session.tool
    async def explode(city: str) -> dict[str, Any]:
        """Always fails."""
        raise ValueError(f"no weather station in {city}")


def _times_out(session: engine.Session) -> None:
    @session.tool(timeout=0.2)
    async def explode(city: str) -> dict[str, Any]:
        """Never answers."""
        await anyio.sleep_forever()
        return {}


def _not_json(session: engine.Session) -> None:
    @session.tool
    async def explode(city: str) -> Any:
        """Returns something JSON cannot carry."""
        return {"when": object()}


def _nothing(session: engine.Session) -> None:
    pass  # the model calls a tool nobody registered


@pytest.mark.parametrize(
    ("register", "mentions"),
    [
        pytest.param(_raises, ["ValueError", "no weather station in Paris"], id="raises"),
        pytest.param(_times_out, ["timed out", "0.2"], id="timeout"),
        pytest.param(_not_json, ["not JSON"], id="not-json"),
        pytest.param(_nothing, ["unknown tool", "explode"], id="unknown"),
    ],
)
async def test_failed_tool_answers_with_an_error_and_the_conversation_goes_on(
    register: Callable[[engine.Session], None], mentions: list[str]
) -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            sent = script_calls(peer, [("call_x", "explode", '{"city":"Paris"}')])
            session = make_session(peer)
            register(session)
            async with session.connect():
                stream = session.events()
                await session.send_text("weather?")
                await peer.wait_for("conversation.item.create", 2)
                answered_after = anyio.current_time() - sent["calls"]
                events = await collect_until(stream, is_final_done)
                await round_trip(session, peer)

    (output,) = outputs(peer)
    assert output["call_id"] == "call_x"
    error = json.loads(output["output"])["error"]
    for word in mentions:
        assert word in error
    assert answered_after < 1.0, f"the error output took {answered_after:.2f}s"
    (result,) = of_type(events, ToolResult)
    assert result.is_error
    assert after(peer, "response.create").count("response.create") == 1
    assert events[-1].status == "completed"  # the follow-up response arrived


# ---------------------------------------------------------------------- tools and user speech


async def test_tool_answered_while_the_user_speaks_needs_no_extra_response() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            script_calls(peer, [("call_1", "slow_lookup", '{"q":"a"}')])
            session = make_session(peer)
            release = anyio.Event()

            @session.tool
            async def slow_lookup(q: str) -> dict[str, str]:
                """Slow."""
                await release.wait()
                return {"found": q}

            turn = vad_turn("item_u1", ["actually, ", "never mind"])
            async with session.connect():
                stream = session.events()
                await session.send_text("look it up")
                await collect_until(stream, lambda e: isinstance(e, ToolCall))
                await peer.push(turn[:1])  # the user starts talking while the tool runs
                await collect_until(stream, lambda e: isinstance(e, SpeechStarted))
                release.set()
                await collect_until(stream, lambda e: isinstance(e, ToolResult))
                # The server's VAD ends the turn and answers it, with the tool output in context.
                await peer.push(turn[1:] + audio_response("resp_v", "item_v", "Okay, never mind."))
                await collect_until(
                    stream, lambda e: isinstance(e, ResponseDone) and e.response_id == "resp_v"
                )
                await round_trip(session, peer)
    assert len(outputs(peer)) == 1
    assert peer.sent_types().count("response.create") == 1  # only the one for "look it up"
