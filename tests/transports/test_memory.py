"""The in-memory transport pair and connector, under asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

from engine.errors import ConnectionClosed, HandshakeError, TransportError
from engine.transports import MemoryConnector, TransportSettings, memory_pair
from tests.transports.apps import EchoApp

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer test-secret"}


async def test_round_trip_both_ways_in_order() -> None:
    client, server = memory_pair()
    with anyio.fail_after(5):
        for text in ("one", "two", "three"):
            await client.send(text)
        assert [await server.receive() for _ in range(3)] == ["one", "two", "three"]
        await server.send("back")
        assert await client.receive() == "back"
        await client.aclose()
        await server.aclose()


async def test_close_code_reaches_the_other_end_after_pending_messages() -> None:
    client, server = memory_pair()
    with anyio.fail_after(5):
        await client.send("last words")
        await client.aclose(4001, "bye")
        assert await server.receive() == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await server.receive()
        assert (info.value.code, info.value.reason) == (4001, "bye")
        with pytest.raises(ConnectionClosed) as sent:
            await server.send("anyone?")
        assert sent.value.code == 4001
        with pytest.raises(ConnectionClosed) as own:
            await client.receive()
        assert own.value.code == 4001
        await server.aclose()


async def test_close_wakes_a_waiting_receiver_and_first_close_wins() -> None:
    client, server = memory_pair(max_buffer=0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:

            async def close_soon() -> None:
                await anyio.wait_all_tasks_blocked()
                await server.aclose(4003, "server first")

            group.start_soon(close_soon)
            with pytest.raises(ConnectionClosed) as info:
                await client.receive()
        await client.aclose(1000)  # never raises, does not rewrite the cause
        await server.aclose(1000)
        assert info.value.code == 4003
        assert client.close_code == server.close_code == 4003


async def test_connector_serves_an_app() -> None:
    app = EchoApp()
    with MemoryConnector() as connector, anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await group.start(connector.serve, app)
            async with connector("ws://memory/v1?model=m1", AUTH, TransportSettings()) as transport:
                await transport.send("hello")
                assert await transport.receive() == "hello"
            with pytest.raises(HandshakeError) as info:
                async with connector("ws://memory/v1", {}, TransportSettings()):
                    pytest.fail("accepted without credentials")
            async with connector("ws://memory/crash", AUTH) as transport:
                with pytest.raises(ConnectionClosed) as crashed:
                    await transport.receive()
            group.cancel_scope.cancel()
    assert info.value.is_auth_failure
    assert crashed.value.code == 1011
    assert app.seen[0][0] == "/v1?model=m1"
    assert app.seen[0][1]["AUTHORIZATION"] == "Bearer test-secret"


async def test_connector_by_hand_and_timeout() -> None:
    with MemoryConnector() as connector, anyio.fail_after(5):
        async with anyio.create_task_group() as group:

            async def accept_one() -> None:
                request = await connector.next_request()
                assert request.path == "/x?a=1"
                server = request.accept()
                await server.send(await server.receive())
                await server.aclose()

            group.start_soon(accept_one)
            async with connector("ws://memory/x?a=1") as transport:
                await transport.send("echo")
                assert await transport.receive() == "echo"
        with pytest.raises(TransportError, match="timed out"):
            async with connector("ws://memory/", None, TransportSettings(connect_timeout=0.05)):
                pytest.fail("connected with no server")


async def test_closed_connector_refuses_and_ends_serve() -> None:
    connector = MemoryConnector()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await group.start(connector.serve, EchoApp())
            connector.close()  # serve returns, so the group exits
        with pytest.raises(TransportError, match="closed"):
            async with connector("ws://memory/", AUTH):
                pytest.fail("connected through a closed connector")
