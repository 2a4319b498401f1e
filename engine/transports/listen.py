"""A WebSocket server under the running backend, for the local test and realtime servers.

:func:`serve` listens with trio-websocket under trio and websockets under
asyncio, and runs a :class:`~engine.transports.base.ServerApp` for each client:
``check_handshake`` may refuse the HTTP upgrade, then ``handle`` gets a
:class:`~engine.transports.base.Transport` like the client's. Plain ``ws://``
only: it is meant for loopback.
"""

from __future__ import annotations

import logging
from functools import partial

import anyio
import anyio.abc
import sniffio

from engine.transports._serving import RequestHeaders, check_handshake, run_app
from engine.transports.base import ServerApp, TransportSettings

logger = logging.getLogger(__name__)


async def serve(
    app: ServerApp,
    host: str,
    port: int,
    *,
    settings: TransportSettings | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled.

    Start it with ``port = await task_group.start(serve, app, "127.0.0.1", 0)``:
    the actual port is reported once the socket listens (port 0 picks a free
    one). ``settings`` applies to every accepted connection (message size,
    keep-alive, timeouts). On cancellation, open connections are closed with
    1001 (each bounded by ``close_timeout``).
    """
    settings = settings or TransportSettings()
    library = sniffio.current_async_library()
    if library == "trio":
        await _serve_trio(app, host, port, settings, task_status)
    elif library == "asyncio":
        await _serve_asyncio(app, host, port, settings, task_status)
    else:
        raise RuntimeError(f"unsupported async library: {library}")


async def _serve_trio(
    app: ServerApp,
    host: str,
    port: int,
    settings: TransportSettings,
    task_status: anyio.abc.TaskStatus[int],
) -> None:
    import trio
    import trio_websocket as tw

    from engine.transports.trio_ws import QUEUE_SIZE, TrioTransport

    live: set[TrioTransport] = set()

    async def handler(request: tw.WebSocketRequest) -> None:
        # An exception here would stop trio-websocket's whole server: run_app
        # and check_handshake log the app's; a vanished client is expected.
        try:
            path = request.path
            headers = RequestHeaders((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
            refusal = check_handshake(app, path, headers)
            if refusal is not None:
                await request.reject(refusal[0], body=refusal[1].encode())
                return
            transport = TrioTransport(await request.accept(), settings)
        except (tw.ConnectionClosed, tw.HandshakeError, trio.BrokenResourceError) as exc:
            logger.debug("client went away during the handshake: %r", exc)
            return
        live.add(transport)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(transport.keep_alive)
                await run_app(app, transport, path, headers)
                nursery.cancel_scope.cancel()
        finally:
            live.discard(transport)

    # Cancelling trio-websocket's server also cancels each connection's reader,
    # after which no close reply can be read. So connections run in a shielded
    # nursery; when serve is cancelled it closes them with 1001 (bounded by
    # close_timeout, readers still running), then cancels what is left.
    shutdown = trio.Event()

    async def run_connections(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as handlers:
                task_status.started(handlers)
                await shutdown.wait()
                async with trio.open_nursery() as closing:
                    for transport in list(live):
                        closing.start_soon(transport.aclose, 1001, "server shutting down")
                handlers.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        handlers = await nursery.start(run_connections)
        try:
            server = await nursery.start(
                partial(
                    tw.serve_websocket,
                    handler,
                    host,
                    port,
                    None,
                    handler_nursery=handlers,
                    message_queue_size=QUEUE_SIZE,
                    max_message_size=settings.max_message_size,
                    connect_timeout=settings.connect_timeout,
                    disconnect_timeout=settings.close_timeout,
                )
            )
            logger.info("listening on ws://%s:%d (trio)", host, server.port)
            task_status.started(server.port)
            await trio.sleep_forever()
        finally:
            shutdown.set()


async def _serve_asyncio(
    app: ServerApp,
    host: str,
    port: int,
    settings: TransportSettings,
    task_status: anyio.abc.TaskStatus[int],
) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.http11 import Request, Response

    from engine.transports.asyncio_ws import AsyncioTransport, RedactingLogger, ws_options

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        refusal = check_handshake(app, request.path, RequestHeaders(request.headers.raw_items()))
        return None if refusal is None else connection.respond(*refusal)

    async def handler(connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None  # set once the handshake succeeded
        headers = RequestHeaders(request.headers.raw_items())
        await run_app(app, AsyncioTransport(connection, settings), request.path, headers)

    server = await ws_serve(
        handler,
        host,
        port,
        process_request=process_request,
        logger=RedactingLogger(logging.getLogger("websockets.server")),
        **ws_options(settings),
    )
    try:
        actual = int(server.sockets[0].getsockname()[1])
        logger.info("listening on ws://%s:%d (asyncio)", host, actual)
        task_status.started(actual)
        await anyio.sleep_forever()
    finally:
        server.close(code=1001, reason="server shutting down")
        with anyio.move_on_after(settings.close_timeout + 1, shield=True):
            await server.wait_closed()
