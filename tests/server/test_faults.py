"""Fault injection and replay over real loopback sockets, under asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from engine.errors import ConnectionClosed, HandshakeError
from engine.server import Faults
from engine.transports import connect
from tests.server.helpers import SETTINGS, Client, make_server, serve_and_connect

pytestmark = pytest.mark.anyio

USER_TEXT = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
}


async def test_drop_after_n_events_cuts_the_socket_without_a_close_frame() -> None:
    server = make_server(faults=Faults(drop_after=2))
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:  # greeted: events 1 and 2 arrived
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
    assert closed.value.code == 1006
    assert server.connections[0].dropped
    assert list(server.connections[0].sent_types) == ["session.created", "conversation.created"]


async def test_drop_at_an_event_type_can_close_with_a_code() -> None:
    server = make_server()
    server.inject(Faults(drop_at="response.created", close_code=1011, close_reason="boom"))
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            await client.send_all([USER_TEXT, {"type": "response.create"}])
            await client.expect("conversation.item.added")
            await client.expect("conversation.item.done")
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
    assert (closed.value.code, closed.value.reason) == (1011, "boom")
    assert "response.created" not in server.connections[0].sent_types


async def test_delay_holds_an_event_type_back() -> None:
    server = make_server(faults=Faults(delay={"session.updated": 0.3}))
    with anyio.fail_after(10):
        async with serve_and_connect(server) as client:
            started = anyio.current_time()
            await client.send({"type": "session.update", "session": {"instructions": "slow"}})
            await client.expect("session.updated")
            assert anyio.current_time() - started >= 0.29


async def test_duplicate_sends_an_event_type_twice() -> None:
    server = make_server(faults=Faults(duplicate={"conversation.created"}))
    with anyio.fail_after(10):
        async with serve_and_connect(server, greet=False) as client:
            await client.expect("session.created")
            first = await client.expect("conversation.created")
            second = await client.expect("conversation.created")
    assert first == second


async def test_refuse_next_connections_with_503() -> None:
    server = make_server()
    server.refuse_next(2)
    with anyio.fail_after(10):
        async with server.running():
            for _ in range(2):
                with pytest.raises(HandshakeError) as refused:
                    async with connect(server.url(), server.headers(), SETTINGS):
                        pass
                assert refused.value.status == 503
            async with connect(server.url(), server.headers(), SETTINGS) as transport:
                await Client(transport).greeted()
    assert server.refused == 2
    assert len(server.connections) == 1


async def test_silent_connection_answers_nothing_not_even_the_close() -> None:
    server = make_server(faults=Faults(silent_after=2))
    with anyio.fail_after(10):
        async with server.running():
            async with connect(server.url(), server.headers(), SETTINGS) as transport:
                client = Client(transport)
                await client.greeted()
                await client.send({"type": "session.update", "session": {"instructions": "anyone?"}})
                with anyio.move_on_after(0.3) as waited:
                    await client.recv()
                assert waited.cancelled_caught  # nothing came back
                closing = anyio.current_time()
            # The close handshake went unanswered: the client waited its whole close_timeout.
            assert anyio.current_time() - closing >= SETTINGS.close_timeout * 0.9
            connection = server.connections[0]
            await connection.wait_closed()  # ends once the client drops the TCP connection
    assert connection.silent
    assert list(connection.sent_types) == ["session.created", "conversation.created"]


async def test_faults_can_target_a_connection_by_index() -> None:
    server = make_server()
    server.inject(Faults(drop_after=1), index=1)
    with anyio.fail_after(10):
        async with server.running():
            async with connect(server.url(), server.headers(), SETTINGS) as transport:
                await Client(transport).greeted()
            async with connect(server.url(), server.headers(), SETTINGS) as transport:
                client = Client(transport)
                await client.expect("session.created")
                with pytest.raises(ConnectionClosed):
                    await client.recv()
    assert [c.dropped for c in server.connections] == [False, True]


async def test_replay_serves_recorded_events_verbatim() -> None:
    server = make_server()
    recorded: list[dict[str, Any]] = [
        {"type": "session.created", "event_id": "rec_1", "session": {"type": "realtime"}},
        {"await": "response.create"},
        {
            "type": "response.created",
            "event_id": "rec_2",
            "response": {
                "id": "resp_rec",
                "object": "realtime.response",
                "status": "in_progress",
                "output": [],
            },
        },
        {"sleep": 0.01},
        {
            "type": "response.done",
            "event_id": "rec_3",
            "response": {
                "id": "resp_rec",
                "object": "realtime.response",
                "status": "completed",
                "output": [],
            },
        },
    ]
    server.replay(recorded)
    with anyio.fail_after(10):
        async with serve_and_connect(server, greet=False) as client:
            assert await client.recv() == recorded[0]
            await client.send({"type": "response.create"})
            assert await client.recv() == recorded[2]
            assert await client.recv() == recorded[4]
    connection = server.connections[0]
    assert connection.core is None
    with pytest.raises(RuntimeError):
        _ = connection.conversation


async def test_drop_after_zero_accepts_then_cuts_at_once() -> None:
    server = make_server(faults=Faults(drop_after=0, close_code=1013, close_reason="try again later"))
    with anyio.fail_after(10):
        async with serve_and_connect(server, greet=False) as client:
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
    assert (closed.value.code, closed.value.reason) == (1013, "try again later")
    assert list(server.connections[0].sent_types) == []
