"""``CallHost``: a Ray actor that runs placed calls (one host per core, asyncio inside).

``run_call`` is a Ray streaming generator: it yields :class:`Accepted` as soon
as the host takes the call, then a :class:`~engine.scale.spec.Checkpoint`
after every turn, tool call and tool answer, and last the
:class:`~engine.scale.spec.CallOutcome`. The dispatcher reads the stream, so a
host that dies mid-call shows as an ``ActorDiedError`` (a ``RayActorError``)
on it, and the last checkpoint it read resumes the call elsewhere.

``load()`` runs in the ``monitor`` concurrency group: Ray gives an async actor
one event loop per group, each in its own thread, so the load and health of a
host whose call loop is blocked (a tool that sleeps synchronously) are still
answered, and say so: ``loop_lag`` is how long the call loop's heartbeat has
been late.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
import attrs

from engine.scale.cluster import require_ray
from engine.scale.dispatch_call import run_placed_call
from engine.scale.spec import CallOutcome, CallSpec, Checkpoint

ray = require_ray()
log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
MONITOR = "monitor"
BEAT_S = 0.05
"""The call loop's heartbeat period."""
STALLED_S = 0.5
"""A heartbeat this late (beyond its period) marks the host unhealthy."""


class HostFull(RuntimeError):
    """The host was asked to run more calls than its capacity (the dispatcher never does)."""


@attrs.frozen(kw_only=True)
class Accepted:
    """The host took the call (first record of ``run_call``)."""

    host: str
    active: int


@attrs.frozen(kw_only=True)
class HostLoad:
    """One host's load and health, as its monitor thread sees them."""

    host: str
    capacity: int
    active: int
    peak: int
    """The most calls it ever ran at once (never above ``capacity``)."""
    loop_lag: float
    """Seconds the call loop's heartbeat is late (0 when the loop turns)."""
    healthy: bool
    """False when the call loop has been stuck longer than ``STALLED_S``, or the host did not answer."""

    @classmethod
    def unreachable(cls, host: str, capacity: int) -> HostLoad:
        return cls(host=host, capacity=capacity, active=0, peak=0, loop_lag=float("inf"), healthy=False)


def _on_monitor(method: F) -> F:
    """Run ``method`` on the monitor group's own loop and thread."""
    marked: F = ray.method(concurrency_group=MONITOR)(method)
    return marked


class CallHost:
    """Runs up to ``capacity`` calls at once on its asyncio loop."""

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._calls: set[str] = set()
        self._peak = 0
        self._beat = time.monotonic()
        self._heart: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start the heartbeat on the call loop; the host's name once ready."""
        if self._heart is None:
            self._heart = asyncio.get_running_loop().create_task(self._beating())
        return self.name

    async def _beating(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    async def run_call(
        self, call_id: str, spec: CallSpec, checkpoint: Checkpoint | None, attempt: int
    ) -> AsyncIterator[Accepted | Checkpoint | CallOutcome]:
        """Run one call; yields ``Accepted``, checkpoints, then the outcome (streaming generator)."""
        if len(self._calls) >= self.capacity:
            raise HostFull(f"host {self.name} already runs {len(self._calls)} of {self.capacity} calls")
        self._calls.add(call_id)
        self._peak = max(self._peak, len(self._calls))
        try:
            yield Accepted(host=self.name, active=len(self._calls))
            send, receive = anyio.create_memory_object_stream[Checkpoint | CallOutcome](8)

            async def run() -> None:
                async with send:
                    outcome = await run_placed_call(call_id, self.name, spec, checkpoint, attempt, send.send)
                    await send.send(outcome)

            task = asyncio.get_running_loop().create_task(run())
            try:
                async with receive:
                    async for record in receive:
                        yield record
                await task  # what the call raised, if it did
            finally:
                task.cancel()
        finally:
            self._calls.discard(call_id)

    @_on_monitor
    async def load(self) -> HostLoad:
        """Load and health, answered on the monitor thread even while the call loop is blocked."""
        lag = max(0.0, time.monotonic() - self._beat - BEAT_S)
        return HostLoad(
            host=self.name,
            capacity=self.capacity,
            active=len(self._calls),
            peak=self._peak,
            loop_lag=lag,
            healthy=self._heart is not None and lag < STALLED_S,
        )


CallHostActor: Any = ray.remote(concurrency_groups={MONITOR: 1})(CallHost)
"""``CallHost`` as a Ray actor class: ``CallHostActor.options(num_cpus=...).remote(name, capacity)``."""
