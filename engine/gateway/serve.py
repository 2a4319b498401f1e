"""``engine serve``: run the call gateway with an agent, under trio or asyncio (hypercorn).

``engine serve [APP] [--host 127.0.0.1] [--port 8080] [--backend trio|asyncio]
[--max-calls N] [--drain-timeout S] [--url URL --provider inworld|openai]``

``APP`` is ``module:attribute`` naming an :class:`~engine.Agent` (as ``uvicorn
module:app``). Without ``APP`` a built-in demo agent (a weather tool) is
served; without ``--url`` and without a provider on the agent, every call
talks to an embedded local realtime server on a free loopback port, so the
command works offline. With ``--url`` the key comes from ``INWORLD_API_KEY``
or ``OPENAI_API_KEY``; a Twilio auth token in ``TWILIO_AUTH_TOKEN`` and a
Telnyx public key in ``TELNYX_PUBLIC_KEY`` turn on each carrier's signature
checks (secrets come from the environment, never the command line).

SIGTERM or SIGINT drains: no new calls, live calls may end by themselves
until ``--drain-timeout``, then they are ended cleanly (session closed,
carrier socket closed), and the process exits 0.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import sniffio

from engine.gateway.agent import Agent
from engine.protocol.config import SessionConfig
from engine.providers import Inworld, OpenAI, Provider

log = logging.getLogger(__name__)

_MISSING_EXTRA = "engine serve needs the 'serve' extra: pip install 'engine[serve]'"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's arguments."""
    parser.add_argument("app", nargs="?", help="module:attribute naming an engine.Agent (default: the demo)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    parser.add_argument("--max-calls", type=int, default=100, help="live calls before new ones are refused")
    parser.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds live calls may go on after SIGTERM"
    )
    parser.add_argument("--url", help="a realtime endpoint for every call (default: the agent's provider)")
    parser.add_argument("--provider", choices=("inworld", "openai"), default="inworld")
    from engine.scale.serve_cli import add_arguments as add_ray_arguments

    add_ray_arguments(parser)  # --ray and its options: the gateway on Ray Serve (engine[ray])


def demo_agent() -> Agent:
    """The built-in agent: a cheerful weather bot with one tool."""
    agent = Agent(
        config=SessionConfig(
            instructions="You are a cheerful weather assistant on the phone. Keep answers short."
        )
    )

    @agent.tool
    async def get_weather(city: str) -> dict[str, Any]:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        return {"city": city, "sky": "sunny", "temp_c": 21}

    return agent


def import_named(spec: str) -> Any:
    """The object ``module:attribute`` names. Raises ``ValueError`` with what is wrong.

    Modules beside the working directory import, as under uvicorn (``engine serve``
    and the Ray replicas and hosts of engine.scale all load agents this way).
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"APP must be module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
    return found


def load_agent(spec: str) -> Agent:
    """The Agent named by ``module:attribute``. Raises ``ValueError`` with what is wrong."""
    agent = import_named(spec)
    if not isinstance(agent, Agent):
        raise TypeError(f"{spec} is a {type(agent).__name__}, not an engine.Agent")
    return agent


def provider_from_env(name: str, url: str) -> Provider:
    """A provider for ``url`` with the key from the environment. Raises ``ValueError`` if it is unset."""
    variable = "INWORLD_API_KEY" if name == "inworld" else "OPENAI_API_KEY"
    key = os.environ.get(variable)
    if not key:
        raise ValueError(f"--url needs the API key in {variable}")
    return Inworld(api_key=key, url=url) if name == "inworld" else OpenAI(api_key=key, url=url)


CARRIER_KEYS = {"twilio": "TWILIO_AUTH_TOKEN", "telnyx": "TELNYX_PUBLIC_KEY"}
"""The environment variable holding each carrier's signing key."""


def carrier_keys(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The carriers' signing keys set in ``environ`` (``None`` when none is), for ``Gateway(secrets=...)``."""
    keys = {carrier: environ[name] for carrier, name in CARRIER_KEYS.items() if environ.get(name)}
    return keys or None


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one), handed to hypercorn as ``fd://``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve_gateway(
    gateway: Any,
    sock: socket.socket,
    *,
    stop: anyio.Event,
    drain_timeout: float,
) -> None:
    """Serve ``gateway`` on ``sock`` with hypercorn under the running backend until ``stop``, then drain.

    The drain (:meth:`Gateway.shutdown`) runs inside hypercorn's shutdown
    trigger, so every call has ended before hypercorn stops.
    """
    try:
        from hypercorn.config import Config
    except ImportError:
        raise RuntimeError(_MISSING_EXTRA) from None
    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the copy
    config.accesslog = None
    config.graceful_timeout = 1.0  # calls have ended by then: the drain ran first

    async def trigger() -> None:
        await stop.wait()
        await gateway.shutdown(drain_timeout)

    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(gateway, config, shutdown_trigger=trigger)
        return
    from hypercorn.asyncio import serve as asyncio_serve

    # In its own task: hypercorn's asyncio task group can leave a cancellation request counted
    # on the task that awaited it, which anyio would then read as a cancellation from outside.
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(asyncio_serve, gateway, config, shutdown_trigger=trigger))


@asynccontextmanager
async def call_provider(agent: Agent, url: str | None, provider: str) -> AsyncIterator[Provider | None]:
    """The provider every call uses: ``--url``'s, else the agent's, else an embedded local server's."""
    if url is not None:
        yield provider_from_env(provider, url)
        return
    if agent.provider is not None:
        yield None  # the agent's own
        return
    from engine.server import LocalServer

    async with LocalServer(ping_interval=None).running() as server:
        log.info("serving calls against the embedded local realtime server at %s", server.url())
        if provider == "openai":
            yield OpenAI(api_key="local-key", url=server.openai_url())
        else:
            yield Inworld(api_key="local-key", url=server.url())


async def run_serve(args: argparse.Namespace, out: TextIO, *, stop: anyio.Event | None = None) -> int:
    """Run ``engine serve`` until SIGTERM/SIGINT (or ``stop``); the exit status."""
    if getattr(args, "ray", False):
        from engine.scale.serve_cli import run as run_on_ray

        return await run_on_ray(args, out, stop=stop)
    try:
        from engine.gateway.access import Access
        from engine.gateway.app import Gateway, _is_loopback
    except ImportError:
        sys.stderr.write(_MISSING_EXTRA + "\n")
        return 2
    try:
        agent = load_agent(args.app) if args.app else demo_agent()
        _check_limits(args)
        secrets = carrier_keys(os.environ)
        sock = listening_socket(args.host, args.port)
    except (ValueError, TypeError, OSError) as exc:
        sys.stderr.write(f"engine serve: {exc}\n")
        return 2
    stop = stop or anyio.Event()
    with sock:
        try:
            async with call_provider(agent, args.url, args.provider) as provider:
                host, port = sock.getsockname()[:2]
                access = Access(open=_is_loopback(host))
                gateway = Gateway(
                    agent, max_calls=args.max_calls, provider=provider, secrets=secrets, access=access
                )
                shown = f"[{host}]" if ":" in host else host
                out.write(f"engine serve: listening on http://{shown}:{port} (max {args.max_calls} calls)\n")
                out.write(browser_urls(access, shown, port))
                out.flush()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_on_signals, stop.set)
                    await serve_gateway(gateway, sock, stop=stop, drain_timeout=args.drain_timeout)
                    tg.cancel_scope.cancel()
        except ValueError as exc:
            sys.stderr.write(f"engine serve: {exc}\n")
            return 2
    out.write("engine serve: drained, bye\n")
    out.flush()
    return 0


def browser_urls(access: Any, host: str, port: int) -> str:
    """The start-up lines with the page's and the operator's URLs (carrying tokens when not on loopback).

    The tokens go to the terminal only, never to a log; the secret is never shown.
    """
    if host in ("0.0.0.0", "[::]"):
        host = socket.gethostname()  # every interface: a name people can reach it by
    base = f"http://{host}:{port}"
    if access.open:
        return f"engine serve: talk to it in the browser at {base}/ (live calls: {base}/calls)\n"
    return (
        f"engine serve: talk to it in the browser at {base}/?token={access.token('caller')}\n"
        f"engine serve: live calls (operator) at {base}/calls?token={access.token('operator')}\n"
        f"engine serve: tokens expire in {access.max_age / 3600:g} h; "
        "set ENGINE_GATEWAY_SECRET to keep them valid across restarts\n"
    )


def _check_limits(args: argparse.Namespace) -> None:
    if args.max_calls < 1:
        raise ValueError(f"--max-calls must be at least 1, got {args.max_calls}")
    if args.drain_timeout < 0:
        raise ValueError(f"--drain-timeout must be >= 0, got {args.drain_timeout}")


async def _on_signals(stop: Callable[[], None] | Callable[[], Awaitable[None]]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("signal %s: draining", signal.Signals(signum).name)
            stop()
            return
