"""Placement: how long the dispatcher takes from ``submit()`` to a host running the call.

On a local Ray cluster (127.0.0.1, the same machine), a dispatcher with three
call hosts places calls one at a time (each runs a one-turn simulated call
against a LocalServer in this process; the next is submitted once it ended, so
no call ever waits for capacity). *Placement* is from just before
``submit()`` to the ``Placed`` event read from the call's ``events()``: the
driver's submit to the dispatcher actor, the least-loaded choice, the
streaming ``run_call`` to the host and the host's first record back, and the
event's way to the driver. The floor, measured in the same run, is one bare
Ray actor call round trip from the driver to a host (a method that returns
its name). Placement is at least three such hops (submit, ``run_call`` and
its first record, the event back to the driver), so a ratio near 3 is the
bound; the rest is what the dispatcher and Ray's streaming generators add
(``extra.inside_dispatcher_ms``: from the dispatcher taking the call to the
host's first record, the ``Placed`` event's ``seconds``).
No target: the issue sets none.
"""

from __future__ import annotations

import time

import anyio

import engine
from benchmarks._common import Figure, distribution_ms, ratio
from engine.gateway.agent import Agent
from engine.scale import cluster
from engine.scale.dispatcher import Dispatcher
from engine.scale.spec import CallSpec, Endpoint, Placed, SimulatedCaller
from engine.server import LocalServer

NAME = "placement"
BACKENDS = ("asyncio",)
AGENT = "benchmarks.placement:placement_agent"


def placement_agent() -> Agent:
    """The placed calls' agent: no greeting, no tools (the call is not what is measured)."""
    return Agent(config=engine.SessionConfig(instructions="placement"))


async def _floor(host: object, count: int) -> list[float]:
    """Bare round trips to a host actor (a trivial method on its call loop)."""
    times = []
    for _ in range(count + 5):
        start = time.perf_counter()
        await host.start.remote()  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return times[5:]  # the first calls warm Ray's connections up


async def _placements(
    dispatcher: Dispatcher, server: LocalServer, count: int
) -> tuple[list[float], list[float]]:
    spec = CallSpec(
        agent=AGENT, caller=SimulatedCaller(["hi"]), endpoint=Endpoint(url=server.url(), key_env=None)
    )
    times, inside = [], []
    for _ in range(count + 3):
        start = time.perf_counter()
        handle = await dispatcher.submit(spec)
        async for event in handle.events():
            if isinstance(event, Placed):
                times.append(time.perf_counter() - start)
                inside.append(event.seconds)
                break
        await handle.outcome()
    return times[3:], inside[3:]  # the first placements import the agent on each host


async def _measure(quick: bool) -> tuple[list[float], list[float], list[float]]:
    count = 10 if quick else 60
    async with LocalServer(pace=0, ping_interval=None).running() as server:
        dispatcher = await Dispatcher.start(hosts=3, capacity=4, host_cpus=0)
        try:
            hosts = await dispatcher.hosts()
            floor = await _floor(next(iter(hosts.values())), count)
            placed, inside = await _placements(dispatcher, server, count)
        finally:
            await dispatcher.aclose()
    return placed, inside, floor


def run(backend: str, quick: bool) -> list[Figure]:
    cluster.connect(num_cpus=4)
    try:
        placed, inside, floor = anyio.run(_measure, quick, backend=backend)
    finally:
        cluster.disconnect()
    engine, bare, dispatcher = distribution_ms(placed), distribution_ms(floor), distribution_ms(inside)
    figures = []
    for q in ("p50_ms", "p99_ms"):
        r = ratio(engine[q], bare[q])
        figures.append(
            Figure(
                benchmark=NAME,
                backend=backend,
                metric=f"submit -> placed, {q[:3]}",
                unit="ms",
                engine=engine[q],
                floor=bare[q],
                ratio=r,
                extra={
                    "calls": engine["count"],
                    "floor": "one bare Ray actor call to a host",
                    "inside_dispatcher_ms": dispatcher[q],  # its own taking -> the host's Accepted
                },
            )
        )
    return figures
