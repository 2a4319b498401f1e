"""The local server over real loopback sockets, under asyncio and trio.

Every server event received here is decoded with the project's codec and, except
``ping``, validated against openai-python's GA schema (see ``helpers.Client``).
"""

from __future__ import annotations

import json
import re
import time

import anyio
import pytest

from engine.errors import HandshakeError
from engine.server import LocalServer
from engine.transports import MemoryConnector, connect
from tests.server.helpers import (
    AUDIO_RESPONSE,
    CANCELLED_AUDIO,
    SETTINGS,
    TEXT_RESPONSE,
    Client,
    appends,
    collapse,
    make_server,
    serve_and_connect,
    silence,
    tone,
)

pytestmark = pytest.mark.anyio

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user_text(text: str) -> dict[str, object]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def kinds(events: list[dict[str, object]]) -> list[str]:
    return [str(e["type"]) for e in events]


async def test_handshake_needs_authorization_and_the_inworld_query() -> None:
    server = make_server(expected_key="secret")
    with anyio.fail_after(10):
        async with server.running():
            good = server.url()
            cases = [
                (good, {}, 401),
                (good, {"Authorization": "Basic wrong"}, 401),
                (good.replace("&protocol=realtime", ""), server.headers(), 400),
                (good.replace("key=local-session&", ""), server.headers(), 400),
            ]
            for url, headers, status in cases:
                with pytest.raises(HandshakeError) as refused:
                    async with connect(url, headers, SETTINGS):
                        pass
                assert refused.value.status == status
            assert server.connections == []
            for scheme in ("Basic", "Bearer"):
                async with connect(good, server.headers(scheme=scheme), SETTINGS) as transport:
                    await Client(transport).greeted()
            assert len(server.connections) == 2


async def test_connect_greets_and_session_update_merges_or_refuses() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send(
                {"type": "session.update", "session": {"audio": {"output": {"voice": "Sarah"}}}}
            )
            updated = await client.expect("session.updated")
            assert updated["session"]["audio"]["output"]["voice"] == "Sarah"
            bad = {"instructions": "x", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 11025}}}}
            await client.send({"type": "session.update", "event_id": "u2", "session": bad})
            error = (await client.expect("error"))["error"]
            assert error == {
                "type": "invalid_request_error",
                "code": "invalid_value",
                "message": error["message"],
                "param": "session.audio.input.format.rate",
                "event_id": "u2",
            }
            assert server.connections[0].session["instructions"] == ""
            assert server.connections[0].session["audio"]["output"]["voice"] == "Sarah"


async def test_voice_turn_from_synthesized_pcm() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send_all(appends(silence(1000) + tone(1000) + silence(1000)))
            events = await client.until("response.done")
    started, stopped = events[0], events[1]
    assert (started["type"], stopped["type"]) == (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
    )
    assert abs(int(started["audio_start_ms"]) - 1000) <= 100
    assert abs(int(stopped["audio_end_ms"]) - 2000) <= 100
    assert collapse(kinds(events))[2:] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "<deltas>",
        "conversation.item.input_audio_transcription.completed",
        *AUDIO_RESPONSE,
    ]
    completed = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert re.fullmatch(r"\[speech 1\.\d\d s, loud\]", str(completed["transcript"]))
    user, assistant = server.connections[0].conversation.items
    assert user.id == started["item_id"] and assistant.role == "assistant"


async def test_text_turn_in_text_modality() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send({"type": "session.update", "session": {"output_modalities": ["text"]}})
            await client.expect("session.updated")
            await client.send(user_text("hello there"))
            assert kinds(await client.until("conversation.item.done")) == [
                "conversation.item.added",
                "conversation.item.done",
            ]
            await client.send({"type": "response.create"})
            events = await client.until("response.done")
    assert collapse(kinds(events)) == TEXT_RESPONSE
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "You said: hello there."


async def test_tool_call_turn_then_the_answer_includes_the_output() -> None:
    server = make_server()
    session = {"tools": [WEATHER_TOOL], "providerData": {"auto_tool_response": False}}
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send({"type": "session.update", "session": session})
            await client.expect("session.updated")
            await client.send(user_text("what's the weather in Paris"))
            await client.until("conversation.item.done")
            await client.send({"type": "response.create"})
            call_events = await client.until("response.done")
            done = next(e for e in call_events if e["type"] == "response.function_call_arguments.done")
            assert done["name"] == "get_weather"
            assert json.loads(str(done["arguments"])) == {"city": "Paris"}
            output = {"type": "function_call_output", "call_id": done["call_id"], "output": '{"temp_c": 21}'}
            await client.send({"type": "conversation.item.create", "item": output})
            await client.until("conversation.item.done")
            await client.send({"type": "response.create"})
            answer = await client.until("response.done")
    assert collapse(kinds(answer)) == AUDIO_RESPONSE
    transcript = next(e for e in answer if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert transcript == 'The result is {"temp_c": 21}.'


async def test_barge_in_during_a_paced_response_cancels_it() -> None:
    server = make_server(pace=1.0)
    server.say_next("please tell me a long story about the sea and the ships that sail on it")
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send_all(appends(tone(300) + silence(600)))
            await client.until("response.output_audio.delta")
            await client.send_all(appends(tone(300)))
            before = await client.until("input_audio_buffer.speech_started")
            after = [await client.recv() for _ in CANCELLED_AUDIO]
            await client.send_all(appends(silence(600)))
            await client.until("input_audio_buffer.speech_stopped")
            await client.until("response.created")
    assert set(kinds(before[:-1])) <= {
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
    }
    assert kinds(after) == CANCELLED_AUDIO
    assert after[3]["item"]["status"] == "incomplete"
    response = after[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}


async def test_protocol_errors_do_not_end_the_connection() -> None:
    server = make_server(pace=1.0)
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.transport.send("{oops")
            assert (await client.expect("error"))["error"]["code"] == "invalid_json"
            await client.send({"type": "no.such.event", "event_id": "n1"})
            error = (await client.expect("error"))["error"]
            assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", "n1")
            await client.send({"type": "response.cancel", "event_id": "c1"})
            error = (await client.expect("error"))["error"]
            assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "c1")
            await client.send({"type": "input_audio_buffer.commit"})
            error = (await client.expect("error"))["error"]
            assert error["code"] == "input_audio_buffer_commit_empty"
            await client.send({"type": "response.create"})
            await client.send({"type": "response.create", "event_id": "r2"})
            events = await client.until("error")
            assert events[-1]["error"]["code"] == "conversation_already_has_active_response"
            await client.send({"type": "response.cancel"})
            done = (await client.until("response.done"))[-1]
            assert done["response"]["status_details"]["reason"] == "client_cancelled"


async def test_truncate_delete_and_retrieve_over_the_socket() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send(user_text("hi"))
            await client.until("conversation.item.done")
            await client.send({"type": "response.create"})
            item_id = (await client.until("response.done"))[-1]["response"]["output"][0]["id"]
            truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
            await client.send({**truncate, "audio_end_ms": 60_000})
            message = (await client.expect("error"))["error"]["message"]
            assert message == "Audio content of 780ms is already shorter than 60000ms"
            await client.send({**truncate, "audio_end_ms": 300})
            assert (await client.expect("conversation.item.truncated"))["audio_end_ms"] == 300
            await client.send({"type": "conversation.item.retrieve", "item_id": item_id})
            assert (await client.expect("conversation.item.retrieved"))["item"]["id"] == item_id
            await client.send({"type": "conversation.item.delete", "item_id": item_id})
            assert (await client.expect("conversation.item.deleted"))["item_id"] == item_id
    assert [i.role for i in server.connections[0].conversation.items] == ["user"]


async def test_pings_arrive_at_the_configured_interval() -> None:
    server = make_server(ping_interval=0.05)
    with anyio.fail_after(10):
        async with serve_and_connect(server, greet=True) as client:
            from tests.server.helpers import check_server_event

            ping = check_server_event(await client.transport.receive())
    assert ping["type"] == "ping"
    assert abs(int(ping["timestamp"]) - time.time() * 1000) < 5000


async def test_the_same_app_serves_in_memory() -> None:
    server = LocalServer(pace=0)
    connector = MemoryConnector()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            await group.start(connector.serve, server)
            url = "ws://memory/api/v1/realtime/session?key=k&protocol=realtime"
            async with connector(url, {"Authorization": "Bearer x"}) as transport:
                client = Client(transport)
                await client.greeted()
                await client.send(user_text("ping pong"))
                await client.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
                events = await client.until("response.done")
            group.cancel_scope.cancel()
    # MemoryConnector has no close of its own yet; close its request queue so no ResourceWarning fires.
    connector._requests_in.close()
    connector._requests_out.close()
    assert collapse(kinds(events))[2:] == TEXT_RESPONSE


async def test_scripts_by_index_wait_for_their_connection_and_failures_surface_unwrapped() -> None:
    server = make_server()
    server.say_next("for the second one", index=1)
    server.say_next("for whoever speaks first")
    with anyio.fail_after(10):
        async with server.running():
            for expected in ("for whoever speaks first", "for the second one"):
                async with connect(server.url(), server.headers(), SETTINGS) as transport:
                    client = Client(transport)
                    await client.greeted()
                    await client.send_all(appends(tone(300) + silence(600)))
                    events = await client.until("conversation.item.input_audio_transcription.completed")
                    assert events[-1]["transcript"] == expected
            assert (await server.wait_for_connection(1)).index == 1
        with pytest.raises(AssertionError, match="surfaces"):
            async with server.running():
                raise AssertionError("surfaces")
