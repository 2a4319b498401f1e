"""The real transports against a real server, under asyncio and trio.

Client and server both run on the test's backend: trio-websocket under trio,
websockets under asyncio. Everything is on 127.0.0.1 with free ports.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from engine.errors import ConnectionClosed, HandshakeError, TransportError
from engine.transports import TransportSettings, connect
from engine.transports.base import HUNG_UP
from tests.transports.apps import EchoApp, hangup_server, running, silent_server

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer test-secret"}


async def test_echo_round_trip_including_200_kb() -> None:
    app = EchoApp()
    with anyio.fail_after(5):
        async with running(app) as server, connect(server.url, AUTH) as transport:
            await transport.send("hello")
            assert await transport.receive() == "hello"
            big = "é" + "a" * 200_000
            await transport.send(big)
            assert await transport.receive() == big


async def test_server_sees_path_query_and_headers() -> None:
    app = EchoApp()
    headers = {**AUTH, "OpenAI-Beta": "realtime=v1"}
    with anyio.fail_after(5):
        async with (
            running(app) as server,
            connect(f"{server.url}/v1/realtime?model=m1&key=k1", headers),
        ):
            await app.accepted.wait()
    [(path, seen)] = app.seen
    assert path == "/v1/realtime?model=m1&key=k1"
    assert seen["authorization"] == "Bearer test-secret"
    assert seen["Authorization"] == "Bearer test-secret"
    assert seen["openai-beta"] == "realtime=v1"


async def test_handshake_rejection_401_is_auth_failure() -> None:
    app = EchoApp()
    with anyio.fail_after(5):
        async with running(app) as server:
            with pytest.raises(HandshakeError) as info:
                async with connect(server.url, {}):
                    pytest.fail("connected without credentials")
    assert info.value.status == 401
    assert info.value.is_auth_failure
    assert app.seen == []


async def test_server_close_code_and_reason_reach_client() -> None:
    with anyio.fail_after(5):
        async with running(EchoApp()) as server, connect(f"{server.url}/bye", AUTH) as transport:
            with pytest.raises(ConnectionClosed) as info:
                await transport.receive()
            assert (info.value.code, info.value.reason) == (4001, "bye")
            with pytest.raises(ConnectionClosed):
                await transport.send("too late")


async def test_client_close_code_reaches_server() -> None:
    app = EchoApp()
    with anyio.fail_after(5):
        async with running(app) as server:
            async with connect(server.url, AUTH) as transport:
                await app.accepted.wait()
                await transport.aclose(4002, "done")
                with pytest.raises(ConnectionClosed) as info:
                    await transport.receive()
                assert info.value.code == 4002
            await app.finished.wait()
    [ended] = app.ended
    assert (ended.code, ended.reason) == (4002, "done")


async def test_server_shutdown_closes_clients_with_1001() -> None:
    app = EchoApp()
    with anyio.fail_after(5):
        async with running(app) as server, connect(server.url, AUTH) as transport:
            await transport.send("up?")
            assert await transport.receive() == "up?"
            server.stop()
            with pytest.raises(ConnectionClosed) as info:
                await transport.receive()
            assert info.value.code == 1001


async def test_handler_crash_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(5):
        async with running(EchoApp()) as server, connect(f"{server.url}/crash", AUTH) as transport:
            with pytest.raises(ConnectionClosed) as info:
                await transport.receive()
    assert info.value.code == 1011
    assert "handler bug" in caplog.text


async def test_aclose_is_bounded_when_peer_never_answers() -> None:
    settings = TransportSettings(close_timeout=0.3, keepalive_interval=None)
    with anyio.fail_after(5):
        async with silent_server() as server, connect(server.url, {}, settings) as transport:
            await transport.send("anyone?")
            with anyio.fail_after(2):
                await transport.aclose()
            with anyio.fail_after(2):
                await server.dropped.wait()  # the socket really went away
            with pytest.raises(ConnectionClosed):
                await transport.receive()


async def test_missing_pong_closes_with_1011() -> None:
    settings = TransportSettings(keepalive_interval=0.1, keepalive_timeout=0.2, close_timeout=0.2)
    with anyio.fail_after(5):
        async with silent_server() as server, connect(server.url, {}, settings) as transport:
            with pytest.raises(ConnectionClosed) as info:
                await transport.receive()
    assert info.value.code == 1011


async def test_message_over_max_size_closes_with_1009() -> None:
    settings = TransportSettings(max_message_size=64 * 1024)
    with anyio.fail_after(5):
        async with running(EchoApp()) as server:
            url = f"{server.url}/big?size={100 * 1024}"
            async with connect(url, AUTH, settings) as transport:
                with pytest.raises(TransportError) as info:
                    await transport.receive()
    assert isinstance(info.value, ConnectionClosed)
    assert info.value.code == 1009


async def test_connection_refused_is_transport_error() -> None:
    with anyio.fail_after(5):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
        with pytest.raises(TransportError) as info:
            async with connect(f"ws://127.0.0.1:{port}", AUTH):
                pytest.fail("connected to a closed port")
    assert not isinstance(info.value, HandshakeError)


async def test_connect_timeout_is_transport_error() -> None:
    settings = TransportSettings(connect_timeout=0.2)
    with anyio.fail_after(5):
        async with silent_server(upgrade=False) as server:
            with pytest.raises(TransportError, match="timed out") as info:
                async with connect(server.url, AUTH, settings):
                    pytest.fail("connected without an HTTP answer")
            await server.dropped.wait()  # the half-open socket was closed
    assert not isinstance(info.value, HandshakeError)


@pytest.mark.parametrize("read_request", [True, False], ids=["after-request", "at-once"])
async def test_server_hanging_up_before_the_upgrade_fails_at_once(read_request: bool) -> None:
    # connect_timeout is far beyond the test's bound: waiting for it would fail the test.
    settings = TransportSettings(connect_timeout=60)
    with anyio.fail_after(5):
        async with hangup_server(read_request=read_request) as url:
            with pytest.raises(TransportError) as info:
                async with connect(url, AUTH, settings):
                    pytest.fail("connected to a server that hung up")
    # A transport failure the session retries, not a refusal of the credentials.
    assert type(info.value) is TransportError
    assert str(info.value) == HUNG_UP


async def test_wss_to_a_plain_server_fails_in_tls() -> None:
    with anyio.fail_after(5):
        async with running(EchoApp()) as server:
            url = server.url.replace("ws://", "wss://")
            with pytest.raises(TransportError) as info:
                async with connect(url, AUTH):
                    pytest.fail("TLS handshake succeeded against a plain server")
    assert not isinstance(info.value, ConnectionClosed | HandshakeError)


async def test_caller_exception_leaves_connect_unwrapped() -> None:
    with anyio.fail_after(5):
        async with running(EchoApp()) as server:
            with pytest.raises(KeyError) as info:
                async with connect(server.url, AUTH):
                    raise KeyError("mine")
    assert type(info.value) is KeyError  # not an ExceptionGroup


async def test_connect_applies_url_policy() -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="non-loopback"):
        async with connect("ws://example.com/v1?key=k1", AUTH):
            pytest.fail("connected over plain ws:// to a remote host")


async def test_logs_carry_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": "Bearer s3cret-token", "X-Api-Key": "s3cret-key"}
    with anyio.fail_after(5):
        async with (
            running(EchoApp()) as server,
            connect(f"{server.url}/v1?key=s3cret-query", headers) as transport,
        ):
            await transport.send("hi")
            assert await transport.receive() == "hi"
    assert "connecting to" in caplog.text
    assert "key=***" in caplog.text
    assert "s3cret" not in caplog.text
