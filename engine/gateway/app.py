"""The gateway's ASGI application (Starlette, which runs on anyio under trio and asyncio).

Routes:

* ``GET /healthz``: liveness (200 while the process serves).
* ``GET /readyz``: 200, or 503 when full or draining (for load balancers).
* ``GET /metrics``: the Prometheus text format (:mod:`engine.gateway.metrics`).
* ``POST /<carrier>/voice``: the incoming-call webhook; answers with the
  dialect's markup connecting the call to ``/<carrier>/stream`` (``wss://``,
  or ``ws://`` when the webhook came over plain http to a loopback address),
  passing the webhook's query parameters through as custom parameters.
* ``WS /<carrier>/stream``: the carrier's media stream, one :class:`Bridge` per call
  (``WS /telnyx/stream/<token>`` when the stream needs a token, see below).
* ``GET /``, ``WS /browser``, ``GET /calls``, ``WS /calls/{id}/watch``: talk from
  the browser and watch calls live (:mod:`engine.gateway.browser_routes`).

Admission (:mod:`engine.gateway.calls`) refuses a call at once when full or
draining: 503 on the webhook, close 1013 on the stream. When the carrier's
signing key is configured (Twilio's auth token, Telnyx's public key), the
webhook must carry a valid signature (``X-Twilio-Signature``,
``telnyx-signature-ed25519``, see docs/carriers.md), else 403. Twilio signs
the stream's upgrade too; Telnyx does not, so its stream URL carries a
short-lived token of the gateway's own (:mod:`engine.gateway.stream_tokens`),
without which the upgrade gets 403. Secrets and tokens are never logged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import anyio
import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.gateway.access import Access
from engine.gateway.agent import Agent
from engine.gateway.bridge import Bridge, CarrierGone
from engine.gateway.browser_routes import browser_routes
from engine.gateway.calls import SHUTTING_DOWN, TRACE_CALLS, CallRegistry, Refused, Tracing
from engine.gateway.carriers.base import CarrierStream, SignedRequest
from engine.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from engine.gateway.stream_tokens import SALT, StreamTokens
from engine.providers import Provider, Secret
from engine.transports.base import Connector

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
"""WebSocket close code for "try again later" (RFC 6455 registry): the gateway is full or draining."""


class Signer(Protocol):
    """A carrier's request signature check, holding the key (never shown in its repr)."""

    def check(self, request: SignedRequest) -> bool:
        """Is this webhook (or stream upgrade) signed by the carrier?"""
        ...


@attrs.frozen(kw_only=True)
class Dialect:
    """What the app needs of one carrier: a stream per call, the webhook's answer, its signature check.

    Attributes:
        name: the route prefix and the metrics label (``twilio``, ``telnyx``).
        new_stream: a fresh sans-IO :class:`CarrierStream` for one call.
        answer: ``answer(stream_url, parameters)``: the webhook's response body.
        signer: ``signer(key)`` builds the signature check; ``None``: the dialect
            has no signature to check.
        signs_upgrade: the carrier signs the stream's upgrade too (Twilio); when
            not (Telnyx), a signed webhook's answer carries a stream token instead.
        content_type: of the webhook's answer.
    """

    name: str
    new_stream: Callable[[], CarrierStream]
    answer: Callable[[str, Mapping[str, str]], str]
    signer: Callable[[str], Signer] | None = None
    signs_upgrade: bool = True
    content_type: str = "application/xml"


@attrs.frozen(kw_only=True)
class BridgeOptions:
    """Per-call settings of the bridge (see :class:`Bridge`)."""

    start_timeout: float = 10.0
    close_timeout: float = 3.0
    mark_every: int = 1


class Gateway:
    """The call gateway: the Starlette app, its registry and metrics, and the drain.

    Args:
        agent: the user's agent; a Session per call.
        max_calls: live calls beyond which new ones are refused.
        provider: overrides the agent's provider for every call.
        connector: how each session opens its socket (tests).
        dialects: the carriers served (default: Twilio and Telnyx).
        secrets: the signing key per dialect name (``{"twilio": auth_token, "telnyx":
            public_key}``); a dialect with a key refuses unsigned or badly signed requests with 403.
        bridge: per-call bridge settings.
        access: who may use the browser routes (default: open, for a gateway on loopback).
        tracing: OpenTelemetry for every call (its spans and metrics, with these attributes);
            ``None``: none.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        max_calls: int = 100,
        provider: Provider | None = None,
        connector: Connector | None = None,
        dialects: Mapping[str, Dialect] | None = None,
        secrets: Mapping[str, str | Secret] | None = None,
        bridge: BridgeOptions = BridgeOptions(),
        access: Access | None = None,
        tracing: Tracing | None = TRACE_CALLS,
    ) -> None:
        if not isinstance(agent, Agent):
            raise TypeError(f"the gateway serves an engine.Agent, got {type(agent).__name__}")
        self.agent = agent
        self.provider = provider
        self.connector = connector
        self.metrics = GatewayMetrics()
        self.registry = CallRegistry(max_calls, self.metrics)
        self.registry.tracing = tracing
        self.dialects = dict(dialects) if dialects is not None else default_dialects()
        self._signers: dict[str, Signer] = {}
        for name, secret in (secrets or {}).items():
            dialect = self.dialects.get(name)
            if dialect is None:
                raise ValueError(f"a secret for an unknown carrier {name!r}")
            if dialect.signer is None:
                raise ValueError(f"the {name} dialect has no shared-secret signature to check")
            self._signers[name] = dialect.signer(secret.reveal() if isinstance(secret, Secret) else secret)
        self.bridge = bridge
        self.access = access if access is not None else Access(open=True)
        self._stream_tokens = StreamTokens(self.access.signer(SALT))
        routes: list[Route | WebSocketRoute] = [
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        for name in self.dialects:
            routes.append(Route(f"/{name}/voice", self._voice, methods=["POST"], name=f"{name}_voice"))
            routes.append(WebSocketRoute(f"/{name}/stream", self._stream, name=f"{name}_stream"))
            if not self.dialects[name].signs_upgrade:
                stream_path = f"/{name}/stream/{{token}}"
                routes.append(WebSocketRoute(stream_path, self._stream, name=f"{name}_stream_token"))
        routes += browser_routes(self)  # the page, /calls and their sockets (engine.gateway.browser_routes)
        self.app = Starlette(routes=routes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI entry point (the Starlette app)."""
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ drain

    def drain(self) -> None:
        """Stop admitting calls; live calls go on (readiness turns 503)."""
        if not self.registry.draining:
            log.info("draining: no new calls; %d live", len(self.registry.live))
        self.registry.drain()

    async def shutdown(self, grace: float) -> None:
        """Drain, let live calls end for up to ``grace`` seconds, then end the rest cleanly."""
        self.drain()
        with anyio.move_on_after(grace):
            await self.registry.wait_idle()
        left = self.registry.live
        if left:
            log.info("drain timeout: ending %d live call(s)", len(left))
            self.registry.end_all(SHUTTING_DOWN)
            await self.registry.wait_idle()

    # ------------------------------------------------------------------ routes

    async def _healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def _readyz(self, request: Request) -> Response:
        reason = self.registry.refusal()
        if reason is not None:
            return PlainTextResponse(f"not ready: {reason}\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def _dialect(self, path: str) -> Dialect:
        return self.dialects[path.strip("/").split("/")[0]]

    async def _voice(self, request: Request) -> Response:
        dialect = self._dialect(request.url.path)
        # Carriers post application/x-www-form-urlencoded; parsed here (no multipart dependency).
        body = await request.body()
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = _public_url(request.url, request.headers)
        if not self._signed(dialect, _signed_request(url, request.headers, body, form)):
            return PlainTextResponse("forbidden: bad or missing signature\n", status_code=403)
        try:
            self.registry.check()
        except Refused as refused:
            return PlainTextResponse(f"unavailable: {refused.reason}\n", status_code=503)
        stream_url = _stream_url(request, dialect.name)
        if self._needs_token(dialect):
            stream_url += "/" + self._stream_tokens.issue(dialect.name)
        parameters = dict(request.query_params)
        return Response(dialect.answer(stream_url, parameters), media_type=dialect.content_type)

    async def _stream(self, websocket: WebSocket) -> None:
        dialect = self._dialect(websocket.url.path)
        if self._needs_token(dialect):
            allowed = self._stream_tokens.valid(websocket.path_params.get("token"), dialect.name)
            if not allowed:  # the path holds the token: never logged
                log.warning("%s: refused a stream upgrade without a valid stream token", dialect.name)
        else:
            url = _public_url(websocket.url, websocket.headers)
            allowed = self._signed(dialect, _signed_request(url, websocket.headers, b"", None))
        if not allowed:
            await websocket.close()  # before accept: the upgrade is answered 403
            return
        try:
            live = self.registry.admit(dialect.name)
        except Refused as refused:
            await websocket.accept()
            await websocket.close(TRY_AGAIN_LATER, f"gateway {refused.reason}")
            return
        try:
            await websocket.accept()
        except BaseException:
            self.registry.finish(live, "upgrade failed", failed=True)
            raise
        bridge = Bridge(
            _StarletteSocket(websocket),
            dialect.new_stream(),
            self.agent,
            live,
            self.registry,
            provider=self.provider,
            connector=self.connector,
            start_timeout=self.bridge.start_timeout,
            close_timeout=self.bridge.close_timeout,
            mark_every=self.bridge.mark_every,
        )
        await bridge.run()

    def _signed(self, dialect: Dialect, request: SignedRequest) -> bool:
        """True when no key is configured for the dialect, or the request is signed with it."""
        signer = self._signers.get(dialect.name)
        if signer is None:
            return True
        if not signer.check(request):
            log.warning(
                "%s: refused a request to %s with a bad or missing signature", dialect.name, request.url
            )
            return False
        return True

    def _needs_token(self, dialect: Dialect) -> bool:
        """The dialect's stream is guarded by our token: a key is configured, the carrier signs no upgrade."""
        return dialect.name in self._signers and not dialect.signs_upgrade


def _signed_request(
    url: str, headers: Mapping[str, str], body: bytes, form: Mapping[str, str] | None
) -> SignedRequest:
    """What a signature check sees, stamped with the wall clock now (the checks read no clock)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return SignedRequest(url=url, headers=lowered, body=body, form=form, now=time.time())


def _public_url(url: Any, headers: Mapping[str, str]) -> str:
    """The URL the carrier requested (and signed): the scheme and host a proxy reports, else as received.

    Behind a TLS-terminating proxy or an ingress that rewrites ``Host``, the
    carrier signed the public URL, which only ``X-Forwarded-Proto`` and
    ``X-Forwarded-Host`` still carry (the first value of each when a chain of
    proxies appended theirs). Trusting them is safe for the check: a forged
    header cannot make a signature valid for a URL the carrier did not sign.
    """
    text = str(url)
    forwarded = _first(headers.get("x-forwarded-proto"))
    if forwarded:
        scheme = forwarded
        if text.startswith(("ws:", "wss:")):
            scheme = "wss" if scheme in ("https", "wss") else "ws"
        text = scheme + text[text.index(":") :]
    host = _first(headers.get("x-forwarded-host"))
    if host:
        scheme, _, rest = text.partition("://")
        _, slash, path = rest.partition("/")
        text = f"{scheme}://{host}{slash}{path}"
    return text


def _stream_url(request: Request, carrier: str) -> str:
    """``wss://host/<carrier>/stream``; ``ws://`` only for plain http to a loopback address."""
    headers = request.headers
    host = _first(headers.get("x-forwarded-host")) or headers.get("host") or request.url.netloc
    forwarded = _first(request.headers.get("x-forwarded-proto"))
    plain = (forwarded or request.url.scheme) == "http"
    scheme = "ws" if plain and _is_loopback(host) else "wss"
    return f"{scheme}://{host}/{carrier}/stream"


def _first(value: str | None) -> str:
    """The first value of a forwarded header a chain of proxies appended to (``a, b``)."""
    return (value or "").split(",")[0].strip()


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _StarletteSocket:
    """Starlette's WebSocket as the bridge's :class:`~engine.gateway.bridge.CarrierSocket`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._closed = False

    async def receive(self) -> str | bytes:
        if self._closed:
            raise CarrierGone("closed")
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise CarrierGone(f"disconnected ({message.get('code')})")
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send(self, text: str) -> None:
        if self._closed:
            raise CarrierGone("closed")
        try:
            await self._ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._closed = True
            raise CarrierGone(str(exc)) from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # already gone
            await self._ws.close(code, reason)


def default_dialects() -> dict[str, Dialect]:
    """Twilio and Telnyx, from their sans-IO modules."""
    from engine.gateway.carriers import telnyx, twilio
    from engine.gateway.carriers.telnyx_signature import TelnyxSignature

    # The dialects declare ``name`` as a ClassVar, which mypy does not match to the protocol's
    # settable attribute; the classes do implement CarrierStream.
    twilio_stream = cast(Callable[[], CarrierStream], twilio.TwilioStream)
    telnyx_stream = cast(Callable[[], CarrierStream], telnyx.TelnyxStream)
    return {
        "twilio": Dialect(
            name="twilio",
            new_stream=twilio_stream,
            answer=twilio.connect_twiml,
            signer=twilio.TwilioSignature,
        ),
        # Telnyx signs webhooks with its Ed25519 key, but not the stream's upgrade.
        "telnyx": Dialect(
            name="telnyx",
            new_stream=telnyx_stream,
            answer=telnyx.connect_texml,
            signer=TelnyxSignature,
            signs_upgrade=False,
        ),
    }
