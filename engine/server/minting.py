"""OpenAI's client-secret minting endpoint on loopback, so the credential helpers are tested offline.

``POST /v1/realtime/client_secrets`` with ``Authorization: Bearer <root key>``
and a JSON body ``{"expires_after": {"anchor": "created_at", "seconds": N},
"session": {...}}`` answers ``{"value", "expires_at", "session"}``, as OpenAI
documents it (docs/protocol.md §1.2). Each minted secret becomes the only key
the :class:`~engine.server.app.LocalServer` accepts, so the previous one is
refused from then on: minting is a rotation, and a client that dials with a
stale key gets 401.

The WebSocket libraries the server runs on only accept ``GET`` upgrades, so
this plain HTTP endpoint listens on its own loopback port (h11 over anyio),
beside the WebSocket server rather than on its port.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import h11

from engine.server.app import LocalServer

logger = logging.getLogger(__name__)

PATH = "/v1/realtime/client_secrets"


class MintingEndpoint:
    """Mints client secrets for ``server``; ``api_key`` is the root key it demands."""

    def __init__(self, server: LocalServer, *, api_key: str) -> None:
        self.server = server
        self.api_key = api_key
        self.minted: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.port: int | None = None

    @property
    def url(self) -> str:
        """The endpoint's ``http://`` URL."""
        if self.port is None:
            raise RuntimeError("the minting endpoint is not listening yet")
        return f"http://127.0.0.1:{self.port}{PATH}"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[MintingEndpoint]:
        """Listen on a free loopback port for the duration of the block."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, self._serve)
            try:
                yield self
            finally:
                group.cancel_scope.cancel()

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            connection = h11.Connection(h11.SERVER)
            try:
                with anyio.fail_after(10):
                    status, answer = await self._answer(connection, stream)
                    data = json.dumps(answer).encode()
                    head = h11.Response(
                        status_code=status,
                        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
                    )
                    for event in (head, h11.Data(data=data), h11.EndOfMessage()):
                        await stream.send(connection.send(event) or b"")
            except (
                TimeoutError,
                OSError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                h11.ProtocolError,
            ) as exc:
                logger.debug("minting request abandoned: %r", exc)

    async def _answer(
        self, connection: h11.Connection, stream: anyio.abc.SocketStream
    ) -> tuple[int, dict[str, Any]]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive())
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert request is not None
        if request.target.decode().split("?")[0] != PATH:
            return 404, _error("not_found", f"no route {request.target.decode()!r}")
        if request.method != b"POST":
            return 405, _error("method_not_allowed", "use POST")
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        expected = f"Bearer {self.api_key}".encode()
        if not hmac.compare_digest(headers.get("authorization", "").encode(), expected):
            return 401, _error("invalid_api_key", "Incorrect API key provided", kind="authentication_error")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return 400, _error("invalid_json", "the body is not JSON")
        return self._mint(params)

    def _mint(self, params: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(params, dict):
            return 400, _error("invalid_type", "the body must be a JSON object")
        self.requests.append(params)
        expires = params.get("expires_after") or {}
        seconds = expires.get("seconds", 600) if isinstance(expires, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= 7200:
            return 400, _error("invalid_value", "seconds must be 10 to 7200", param="expires_after.seconds")
        session = params.get("session") or {"type": "realtime"}
        if not isinstance(session, dict) or session.get("type", "realtime") not in (
            "realtime",
            "transcription",
        ):
            return 400, _error(
                "invalid_value", "session.type must be realtime or transcription", param="session"
            )
        value = f"ek_{secrets.token_hex(16)}"
        self.minted.append(value)
        self.server.expected_key = value  # the previous secret is refused from now on
        logger.info("minted client secret %d", len(self.minted))
        session = {
            "type": "realtime",
            "object": "realtime.session",
            "id": f"sess_{secrets.token_hex(8)}",
            **session,
        }
        return 200, {"value": value, "expires_at": int(time.time()) + seconds, "session": session}


def _error(
    code: str, message: str, *, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
