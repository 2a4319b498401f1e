"""The call gateway as a Ray Serve application: one :class:`~engine.gateway.app.Gateway` per replica.

Serve's proxy (one per node) accepts the carrier's webhook and media-stream
WebSocket and routes each to a replica; each replica builds its gateway at
start (``__serve_build_asgi_app__``) from options that carry no secret: the
agent is loaded there from ``module:attribute`` (or the demo agent), the
provider is built there (``url`` with the key from the replica's environment,
a provider whose key is a callable, or an embedded local server).

Admission (docs/scale-serve.md):

* each gateway's registry holds at most ``capacity`` calls and refuses the
  next at once (503 on the webhook, close 1013 on the stream);
* Serve's ``max_ongoing_requests`` is ``capacity + headroom``: webhooks,
  ``/metrics``, ``/readyz`` and refused calls are requests too, so Serve never
  holds a call back in its own queue while the gateway has room;
* :class:`~engine.scale.router.LeastInFlightRouter` fills replicas evenly
  under a burst, so with one proxy a refusal means every replica is full.

Drain: on a downscale or a redeploy Serve stops routing to the replica and
waits for its ongoing requests up to ``graceful_shutdown_timeout_s``, then
kills it. The replica watches for that moment and drains its gateway: live
calls may end by themselves for ``drain_timeout`` seconds, then are ended
cleanly (session closed, carrier socket closed 1000), before Serve's deadline
(``drain_timeout`` plus a margin for the closing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs

from engine.gateway.app import BridgeOptions
from engine.providers import Inworld, OpenAI, Provider
from engine.scale.cluster import require_ray

require_ray()

from ray import serve  # noqa: E402  (after the extra check)

from engine.scale.router import ROUTER  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_HEADROOM = 8
"""Requests beyond the calls a replica takes (webhooks, metrics, probes, refusals, watchers)."""
WAIT_LOOP_S = 0.5
"""How often Serve's drain looks at the replica's ongoing requests (Serve's default: 2 s)."""
SHUTDOWN_POLL_S = 0.2


@attrs.frozen
class EnvKey:
    """An ``api_key`` callable reading the key from the environment of the process that dials.

    Pickled to replicas instead of the key: Ray's config holds the variable's
    name, never its value.
    """

    variable: str

    def __call__(self) -> str:
        key = os.environ.get(self.variable)
        if not key:
            raise ValueError(f"the API key is not set in {self.variable} on this replica")
        return key


@attrs.frozen(kw_only=True)
class ReplicaOptions:
    """What every replica builds its gateway from (pickled into Serve's config: no secret)."""

    app: str | None = None
    capacity: int = 100
    drain_timeout: float = 30.0
    url: str | None = None
    provider_name: str = "inworld"
    provider: Provider | None = None
    open_access: bool = True
    bridge: BridgeOptions = BridgeOptions()


class GatewayReplica:
    """One Serve replica: builds its gateway at start, drains it when Serve stops the replica."""

    def __init__(self, options: ReplicaOptions) -> None:
        self.options = options
        self.gateway: Any = None
        self.replica = "-"
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_server: anyio.Event | None = None

    async def __serve_build_asgi_app__(self) -> Any:
        """Serve's hook (after the constructor): the replica's ASGI app, a Gateway."""
        from engine.gateway.access import Access
        from engine.gateway.app import Gateway
        from engine.gateway.calls import Tracing
        from engine.gateway.serve import carrier_keys, demo_agent, load_agent

        self.replica = serve.get_replica_context().replica_tag
        _label_logs(self.replica)
        o = self.options
        agent = load_agent(o.app) if o.app else demo_agent()
        provider = o.provider
        if provider is None and o.url is not None:
            provider = provider_for(o.provider_name, o.url)
        elif provider is None and agent.provider is None:
            provider = await self._embedded_server()
        # Signing keys from the replica's own environment (TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY), never
        # through Serve's config; replicas share ENGINE_GATEWAY_SECRET (Telnyx stream tokens verify anywhere).
        secrets = carrier_keys(os.environ)
        self.gateway = Gateway(
            agent,
            max_calls=o.capacity,
            provider=provider,
            secrets=secrets,
            bridge=o.bridge,
            access=Access(open=o.open_access),
            tracing=Tracing(attributes={"engine.replica": self.replica}),
        )
        self.gateway.metrics.const_labels = {"replica": self.replica}
        shutting_down = _serve_shutting_down()
        if shutting_down is None:
            log.warning("cannot see Serve's shutdown: live calls will run until Serve's deadline")
        else:
            self._tasks.append(asyncio.get_running_loop().create_task(self._watch(shutting_down)))
        log.info("replica %s serves up to %d calls", self.replica, o.capacity)
        return self.gateway

    async def _watch(self, shutting_down: Callable[[], bool]) -> None:
        # Serve drains a replica by waiting for its ongoing requests (each call is one) and
        # calls __del__ only once none is left: the drain timeout must start here.
        # A flag Serve sets on its own loop, in another thread: polled.
        while not shutting_down():  # noqa: ASYNC110
            await asyncio.sleep(SHUTDOWN_POLL_S)
        log.info("replica %s: Serve is stopping it, draining its calls", self.replica)
        await self.gateway.shutdown(self.options.drain_timeout)

    async def _embedded_server(self) -> Provider:
        from engine.server import LocalServer

        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stop = self._stop_server = anyio.Event()  # on the loop the replica serves requests on

        async def run() -> None:
            try:
                async with LocalServer(ping_interval=None).running() as server:
                    started.set_result(server.url())
                    await stop.wait()
            except Exception as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self._tasks.append(asyncio.get_running_loop().create_task(run()))
        url = await started
        log.info("replica %s: calls talk to an embedded local realtime server", self.replica)
        return Inworld(api_key=_local_key, url=url)

    async def __del__(self) -> None:
        """Serve's destructor (after the drain): end what is left, stop the embedded server."""
        if self.gateway is not None:
            await self.gateway.shutdown(0)
        if self._stop_server is not None:
            self._stop_server.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def provider_for(name: str, url: str) -> Provider:
    """``url``'s provider with its key read on each dial from the replica's environment."""
    if name not in ("inworld", "openai"):
        raise ValueError(f"provider must be inworld or openai, got {name!r}")
    if name == "inworld":
        return Inworld(api_key=EnvKey("INWORLD_API_KEY"), url=url)
    return OpenAI(api_key=EnvKey("OPENAI_API_KEY"), url=url)


def _local_key() -> str:
    return "local-key"  # the embedded local server takes any key


def application(
    app: str | None = None,
    *,
    capacity: int = 100,
    replicas: int = 1,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    target_calls: float | None = None,
    headroom: int = DEFAULT_HEADROOM,
    drain_timeout: float = 30.0,
    url: str | None = None,
    provider_name: str = "inworld",
    provider: Provider | None = None,
    open_access: bool = True,
    bridge: BridgeOptions | None = None,
    num_cpus: float = 1.0,
    version: str | None = None,
    autoscaling_overrides: Mapping[str, Any] | None = None,
) -> Any:
    """The Serve application (not yet running): ``serve.run`` it, or use :func:`deploy`.

    ``replicas`` is fixed unless ``min_replicas``/``max_replicas`` are given:
    then Serve autoscales on ongoing requests per replica, aiming at
    ``target_calls`` (default 70% of ``capacity``). ``provider`` must not hold
    its key (a static key cannot be pickled to a replica): give it a callable
    such as :class:`EnvKey`, or give ``url`` and set the key in the replicas'
    environment. ``num_cpus``: Ray's logical CPUs per replica (one asyncio loop).

    ``version``: redeploying under the same version only reconfigures the
    running replicas (their number, limits): a 2 -> 1 redeploy drains one
    replica. Without it every deploy is a rolling upgrade: Serve starts new
    replicas and drains every old one.

    ``autoscaling_overrides``: further fields of Serve's ``AutoscalingConfig``
    (``upscale_delay_s``, ``downscale_delay_s``, ``look_back_period_s``,
    ``metrics_interval_s``, ...), passed as given; unset, Serve's defaults
    apply. Only with autoscaling; the replica counts and the target have their
    own parameters.
    """
    _check(capacity, replicas, min_replicas, max_replicas, headroom, drain_timeout)
    overrides = _check_overrides(autoscaling_overrides, min_replicas is not None or max_replicas is not None)
    if provider is not None:
        _check_picklable(provider)
    bridge = bridge or BridgeOptions()
    options = ReplicaOptions(
        app=app,
        capacity=capacity,
        drain_timeout=drain_timeout,
        url=url,
        provider_name=provider_name,
        provider=provider,
        open_access=open_access,
        bridge=bridge,
    )
    settings: dict[str, Any] = {
        "max_ongoing_requests": capacity + headroom,
        # Requests wait in Serve's queue only while no replica runs (or every one is at
        # max_ongoing_requests): one replica's worth may wait for one to start, the rest get 503.
        "max_queued_requests": capacity,
        "graceful_shutdown_timeout_s": drain_timeout + bridge.close_timeout + 2 * WAIT_LOOP_S + 2.0,
        "graceful_shutdown_wait_loop_s": WAIT_LOOP_S,
        "request_router_config": {"request_router_class": ROUTER},
        "ray_actor_options": {"num_cpus": num_cpus},
    }
    if min_replicas is not None or max_replicas is not None:
        low = min_replicas if min_replicas is not None else 1
        settings["autoscaling_config"] = {
            "min_replicas": low,
            "initial_replicas": max(low, min(replicas, max_replicas or replicas)),
            "max_replicas": max_replicas if max_replicas is not None else max(low, replicas),
            "target_ongoing_requests": target_calls or max(1.0, 0.7 * capacity),
            **overrides,
        }
    else:
        settings["num_replicas"] = replicas
    deployment = serve.deployment(name="gateway", **settings)(serve.ingress()(GatewayReplica))
    if version is not None:  # Serve keeps the option internal (a new random one per deploy otherwise)
        deployment = deployment.options(version=version, _internal=True)
    return deployment.bind(options)


def deploy(
    app: str | None = None,
    *,
    name: str = "engine",
    host: str = "127.0.0.1",
    port: int = 8000,
    route_prefix: str = "/",
    proxy_location: str | None = None,
    **options: Any,
) -> str:
    """Run the gateway on the connected Ray cluster (see :func:`engine.scale.cluster.connect`); its URL.

    Options as :func:`application`; returns once every replica is ready.
    ``proxy_location``: Serve's (``"EveryNode"`` by default, ``"HeadOnly"``:
    one proxy, so one router balances every call; used when Serve starts).
    """
    built = application(app, **options)
    return run_application(
        built, name=name, host=host, port=port, route_prefix=route_prefix, proxy_location=proxy_location
    )


def run_application(
    built: Any,
    *,
    name: str = "engine",
    host: str = "127.0.0.1",
    port: int = 8000,
    route_prefix: str = "/",
    proxy_location: str | None = None,
) -> str:
    """``serve.run`` an :func:`application`, starting Serve (its proxy on ``host:port``) if it is not running.

    Serve keeps the proxy's address of its first start: when it already runs
    elsewhere on the cluster, the URL returned is where it really listens.
    """
    serve.start(http_options={"host": host, "port": port}, proxy_location=proxy_location)
    serve.run(built, name=name, route_prefix=route_prefix)
    try:
        client = serve.context._get_global_client()
        if client is not None:
            host, port = client.http_config.host, client.http_config.port
    except Exception:  # Ray's internals moved: report what was asked for
        log.debug("cannot read Serve's HTTP options", exc_info=True)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}"


def undeploy(name: str = "engine") -> None:
    """Delete the application: Serve drains every replica (its calls end as on a downscale)."""
    serve.delete(name)


def _check(
    capacity: int,
    replicas: int,
    low: int | None,
    high: int | None,
    headroom: int,
    drain_timeout: float,
) -> None:
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if headroom < 1:
        raise ValueError(f"headroom must be at least 1, got {headroom}")
    if drain_timeout < 0:
        raise ValueError(f"drain_timeout must be >= 0, got {drain_timeout}")
    if low is not None and low < 0:
        raise ValueError(f"min_replicas must be >= 0, got {low}")
    if high is not None and high < max(1, low or 0):
        raise ValueError(f"max_replicas must be at least max(1, min_replicas), got {high}")


OWN_AUTOSCALING = ("min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests")
"""Autoscaling fields set from :func:`application`'s own parameters, never through the overrides."""


def _check_overrides(overrides: Mapping[str, Any] | None, autoscaling: bool) -> dict[str, Any]:
    if not overrides:
        return {}
    if not autoscaling:
        raise ValueError("autoscaling_overrides needs autoscaling: give min_replicas or max_replicas")
    own = sorted(set(overrides) & set(OWN_AUTOSCALING))
    if own:
        raise ValueError(
            f"autoscaling_overrides cannot set {', '.join(own)}: use min_replicas, max_replicas, "
            "replicas and target_calls"
        )
    from ray.serve.config import AutoscalingConfig

    # Serve drops a field it does not know without a word: a misspelt delay would go unnoticed.
    unknown = sorted(set(overrides) - set(getattr(AutoscalingConfig, "model_fields", overrides)))
    if unknown:
        raise ValueError(f"autoscaling_overrides: Serve's AutoscalingConfig has no {', '.join(unknown)}")
    return dict(overrides)


def _check_picklable(provider: Provider) -> None:
    """A provider holding its key cannot go to a replica (a Secret refuses pickling): say so plainly."""
    try:
        pickle.dumps(getattr(provider, "api_key", None))
    except (TypeError, pickle.PicklingError, AttributeError):
        raise TypeError(
            "the provider holds its API key, which is never sent to Ray: give api_key as a "
            "callable (engine.scale.serve.EnvKey('INWORLD_API_KEY') reads it on each replica), "
            "or pass url= and set the key in the replicas' environment"
        ) from None


def _serve_shutting_down() -> Callable[[], bool] | None:
    """A check of Serve's "graceful shutdown started" flag for this replica, if it can be found.

    Serve (2.5x-2.6x) sets ``_shutting_down`` on the replica's implementation
    when the controller stops it, then waits for ongoing requests; nothing
    public tells the user's code, so this looks it up on the replica actor.
    """
    try:
        from ray._private import worker

        for actor in list(getattr(worker.global_worker, "actors", {}).values()):
            impl = getattr(actor, "_replica_impl", None)
            if impl is not None and hasattr(impl, "_shutting_down"):
                return lambda: bool(impl._shutting_down)
    except Exception:  # Ray's internals moved: the caller logs it and Serve's deadline applies
        log.debug("no Serve replica found in this worker", exc_info=True)
    return None


class _ReplicaFilter(logging.Filter):
    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica

    def filter(self, record: logging.LogRecord) -> bool:
        record.replica = self.replica
        return True


def _label_logs(replica: str) -> None:
    """The engine's log lines on this replica say which replica wrote them."""
    logger = logging.getLogger("engine")
    if any(isinstance(f, _ReplicaFilter) for h in logger.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(_ReplicaFilter(replica))
    form = "%(asctime)s %(levelname)s %(name)s replica=%(replica)s %(message)s"
    handler.setFormatter(logging.Formatter(form))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
