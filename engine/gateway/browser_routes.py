"""The gateway's browser routes: talk from the page, watch calls live (see docs/gateway.md).

* ``GET /``: the page (talk to the agent; ``?watch=ID`` shows call ID read-only).
* ``WS /browser``: one call from the page (:class:`~engine.gateway.browser.BrowserBridge`).
* ``GET /calls``: the operator's list of live calls (phone and browser);
  ``GET /calls.json`` is its data.
* ``WS /calls/{id}/watch``: one call's live view, read-only (:mod:`engine.gateway.watch`).
* ``GET /diagram.svg``: the machines drawn from their tables; ``/static/...``: the page's assets.

Access (:mod:`engine.gateway.access`): open on loopback; elsewhere ``/`` and
``WS /browser`` need a caller or operator token, ``/calls`` and the watch
socket an operator token. A refused request gets 401 or 403 with the reason (a
WebSocket upgrade too, as an HTTP answer); the token is never logged.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from engine.gateway import browser_protocol as bp
from engine.gateway.access import CALLER, OPERATOR, Refusal, token_of
from engine.gateway.browser import BrowserBridge, PageGone, PageSocket
from engine.gateway.browser_diagram import svg
from engine.gateway.calls import Refused

if TYPE_CHECKING:
    from engine.gateway.app import Gateway

STATIC = Path(__file__).resolve().parent / "static"
TRY_AGAIN_LATER = 1013
NO_STORE = {"Cache-Control": "no-store"}


TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}


def load_assets(directory: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """The page's files by name with their content type, read once (a few kilobytes, no I/O per request)."""
    return {
        path.name: (path.read_bytes(), TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.suffix in TYPES and path.is_file()
    }


def browser_routes(gateway: Gateway) -> list[Route | WebSocketRoute]:
    """The routes above, served by ``gateway``."""
    pages = _Pages(gateway)
    return [
        Route("/", pages.index, methods=["GET"]),
        Route("/calls", pages.calls, methods=["GET"]),
        Route("/calls.json", pages.calls_json, methods=["GET"]),
        Route("/diagram.svg", pages.diagram, methods=["GET"]),
        WebSocketRoute("/browser", pages.browser),
        WebSocketRoute("/calls/{call_id}/watch", pages.watch),
        Route("/static/{name}", pages.asset, methods=["GET"]),
    ]


def _refused(refusal: Refusal) -> Response:
    return PlainTextResponse(f"{refusal.reason}\n", status_code=refusal.status, headers=NO_STORE)


class _Pages:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.registry = gateway.registry
        self.assets = load_assets()

    def _file(self, name: str) -> Response:
        content, media_type = self.assets[name]
        return Response(content, media_type=media_type, headers=NO_STORE)

    def _check(self, conn: HTTPConnection, need: str) -> Refusal | None:
        return self.gateway.access.check(token_of(conn.query_params, conn.headers), need)

    async def _deny(self, websocket: WebSocket, refusal: Refusal) -> None:
        """Answer the upgrade with HTTP 401/403 (or close 4401/4403 without the ASGI extension)."""
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(_refused(refusal))
            return
        await websocket.accept()
        await websocket.close(4000 + refusal.status, refusal.reason[:120])

    # ------------------------------------------------------------------ pages

    async def index(self, request: Request) -> Response:
        refusal = self._check(request, OPERATOR if "watch" in request.query_params else CALLER)
        if refusal is not None:
            return _refused(refusal)
        return self._file("index.html")

    async def calls(self, request: Request) -> Response:
        refusal = self._check(request, OPERATOR)
        if refusal is not None:
            return _refused(refusal)
        return self._file("calls.html")

    async def calls_json(self, request: Request) -> Response:
        refusal = self._check(request, OPERATOR)
        if refusal is not None:
            return _refused(refusal)
        now = time.monotonic()
        listing: list[dict[str, Any]] = []
        for live in self.registry.live:
            feed = self.registry.feeds.get(live.id)
            listing.append(
                {
                    "id": live.id,
                    "kind": live.carrier,
                    "call": live.state,
                    "states": feed.states if feed is not None else {},
                    "duration_s": round(now - live.started_at, 1),
                    "turns": live.turns,
                    "last_turn": feed.last_metrics if feed is not None else None,
                }
            )
        return JSONResponse({"calls": listing}, headers=NO_STORE)

    async def asset(self, request: Request) -> Response:
        """The page's scripts and styles: code, no call data, so served without a token."""
        name = request.path_params["name"]
        if name not in self.assets or name.endswith(".html"):
            return PlainTextResponse("not found\n", status_code=404)
        return self._file(name)

    async def diagram(self, request: Request) -> Response:
        return Response(svg(), media_type="image/svg+xml")

    # ------------------------------------------------------------------ sockets

    async def browser(self, websocket: WebSocket) -> None:
        refusal = self._check(websocket, CALLER)
        if refusal is not None:
            await self._deny(websocket, refusal)
            return
        try:
            live = self.registry.admit("browser")
        except Refused as refused:
            await websocket.accept()
            await websocket.close(TRY_AGAIN_LATER, f"gateway {refused.reason}")
            return
        try:
            await websocket.accept()
        except BaseException:
            self.registry.finish(live, "upgrade failed", failed=True)
            raise
        options = self.gateway.bridge
        bridge = BrowserBridge(
            PageSocket(websocket),
            self.gateway.agent,
            live,
            self.registry,
            provider=self.gateway.provider,
            connector=self.gateway.connector,
            close_timeout=options.close_timeout,
        )
        await bridge.run()

    async def watch(self, websocket: WebSocket) -> None:
        """One call's live view, read-only: its history so far, then each message as it comes."""
        refusal = self._check(websocket, OPERATOR)
        if refusal is not None:
            await self._deny(websocket, refusal)
            return
        feed = self.registry.feeds.get(websocket.path_params["call_id"])
        if feed is None:
            await self._deny(websocket, Refusal(404, "no such live call"))
            return
        await websocket.accept()
        socket = PageSocket(websocket)
        try:
            await socket.send(
                bp.control("hello", call_id=feed.call_id, watch=True, kind=feed.kind, states=feed.states)
            )
            with feed.watch() as next_message:
                async with anyio.create_task_group() as tg:

                    async def until_gone() -> None:  # a watcher only listens; anything it sends is ignored
                        with contextlib.suppress(PageGone):
                            while True:
                                await socket.receive()
                        tg.cancel_scope.cancel()

                    tg.start_soon(until_gone)
                    while (message := await next_message()) is not None:
                        await socket.send(bp.control("event", event=message))  # the only writer
                    tg.cancel_scope.cancel()
        except PageGone:
            pass
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.gateway.bridge.close_timeout):
                await socket.aclose(1000, "call ended")
