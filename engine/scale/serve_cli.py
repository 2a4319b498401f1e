"""``engine serve --ray``: the gateway as a Ray Serve application, from the command line.

Starts a local Ray cluster (or joins ``--ray-address``, ``auto`` for the one
this node belongs to), deploys the gateway (:func:`engine.scale.serve.deploy`)
with Serve's proxy on ``--host:--port``, prints the URL and waits. SIGTERM or
SIGINT deletes the application: Serve stops routing to the replicas and each
drains its calls (``--drain-timeout``), then the command exits 0.

Secrets stay out of Ray's config: with ``--url`` each replica reads the key
from its own environment (``INWORLD_API_KEY``/``OPENAI_API_KEY``), as it reads
``TWILIO_AUTH_TOKEN``; a local cluster's replicas inherit this process's.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import Any, TextIO

import anyio

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--ray`` options of ``engine serve``."""
    group = parser.add_argument_group("Ray Serve (engine[ray])")
    group.add_argument("--ray", action="store_true", help="run the gateway as a Ray Serve application")
    group.add_argument("--ray-address", help="join this Ray cluster ('auto': this node's), else start one")
    group.add_argument("--replicas", type=int, default=1, help="gateway replicas (initial, when autoscaling)")
    group.add_argument("--capacity", type=int, help="calls per replica (default: --max-calls)")
    group.add_argument("--min-replicas", type=int, help="autoscale down to this many replicas")
    group.add_argument("--max-replicas", type=int, help="autoscale up to this many replicas")
    group.add_argument("--target-calls", type=float, help="ongoing calls per replica autoscaling aims at")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`engine.scale.serve.application`'s options from the command line."""
    from engine.gateway.app import _is_loopback

    return {
        "capacity": args.capacity if args.capacity is not None else args.max_calls,
        "replicas": args.replicas,
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "target_calls": args.target_calls,
        "drain_timeout": args.drain_timeout,
        "url": args.url,
        "provider_name": args.provider,
        "open_access": _is_loopback(args.host),
    }


async def run(args: argparse.Namespace, out: TextIO, *, stop: anyio.Event | None = None) -> int:
    """``engine serve --ray`` until SIGTERM/SIGINT (or ``stop``); the exit status."""
    from engine.gateway.serve import _on_signals, load_agent, provider_from_env

    try:
        from engine.scale import cluster
        from engine.scale import serve as scale_serve

        ray = cluster.require_ray()
    except RuntimeError as exc:
        sys.stderr.write(f"engine serve: {exc}\n")
        return 2
    try:
        if args.app:
            load_agent(args.app)  # fail here, with the reason, rather than on every replica
        if args.url and args.ray_address is None:
            provider_from_env(args.provider, args.url)  # a local cluster's replicas inherit this environment
        settings = options(args)
        application = scale_serve.application(args.app, **settings)
    except (ValueError, TypeError) as exc:
        sys.stderr.write(f"engine serve: {exc}\n")
        return 2
    started_ray = not ray.is_initialized()
    await anyio.to_thread.run_sync(lambda: cluster.connect(args.ray_address))
    stop = stop or anyio.Event()
    try:
        run = functools.partial(scale_serve.run_application, application, host=args.host, port=args.port)
        try:
            url = await anyio.to_thread.run_sync(run)
        except Exception as exc:  # the replicas failed to start: Serve's message names the cause
            sys.stderr.write(f"engine serve: the Serve application did not start: {exc}\n")
            return 2
        capacity = settings["capacity"]
        out.write(f"engine serve: listening on {url} (Ray Serve, {capacity} calls per replica)\n")
        out.flush()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_on_signals, stop.set)
            await stop.wait()
            tg.cancel_scope.cancel()
        out.write("engine serve: draining (deleting the Serve application)\n")
        out.flush()
        await anyio.to_thread.run_sync(scale_serve.undeploy)
    finally:
        if started_ray:
            await anyio.to_thread.run_sync(cluster.disconnect)
    out.write("engine serve: drained, bye\n")
    out.flush()
    return 0
