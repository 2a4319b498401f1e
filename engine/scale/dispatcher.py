"""The dispatcher: places calls on call hosts, with exact admission, a queue deadline and failover.

:class:`Dispatcher` is the handle a program uses (under trio or asyncio);
it drives a Ray actor (:mod:`engine.scale.dispatch_actor`, asyncio inside) that owns the
:class:`~engine.scale.host.CallHost` actors. Placement is least-loaded, and
atomic against each host's capacity: the actor decides on one event loop, with
no await between choosing a host and taking its slot. A call that finds no
free slot waits (``Queued``) at most ``queue_timeout``, then is ``Refused``.
A host that dies mid-call surfaces as an error on the call's stream; the host
leaves the pool (a fresh one replaces it when ``replace_dead``) and each of its
calls is placed elsewhere with its last checkpoint (``FailedOver``): the caller
hears a gap, not a hang-up. docs/scale-dispatch.md has the details.
"""

from __future__ import annotations

from typing import Any

import anyio
import sniffio

from engine.errors import UsageError, UsageTypeError, UsageValueError
from engine.scale.cluster import require_ray
from engine.scale.dispatch_actor import POLL_S, DispatchActorClass
from engine.scale.dispatch_stats import DispatchStats
from engine.scale.host import HostLoad
from engine.scale.spec import (
    TERMINAL,
    CallFailed,
    CallOutcome,
    CallRefused,
    CallSpec,
    Event,
    Failed,
    Finished,
    Refused,
    resolve_agent,
)

ray = require_ray()


async def _get(ref: Any) -> Any:
    """An ObjectRef's value: awaited natively under asyncio, from a worker thread under trio."""
    if sniffio.current_async_library() == "asyncio":
        return await ref
    return await anyio.to_thread.run_sync(ray.get, ref, abandon_on_cancel=True)


class CallEvents:
    """``async for event in handle.events()``: a plain iterator (leaving the loop early needs no cleanup)."""

    def __init__(self, actor: Any, call_id: str) -> None:
        self._actor = actor
        self._call_id = call_id
        self._batch: list[Event] = []
        self._seen = 0
        self._ended = False

    def __aiter__(self) -> CallEvents:
        return self

    async def __anext__(self) -> Event:
        while not self._batch:
            if self._ended:
                raise StopAsyncIteration
            self._batch = await _get(self._actor.events.remote(self._call_id, self._seen, POLL_S))
            self._seen += len(self._batch)
        event = self._batch.pop(0)
        self._ended = isinstance(event, TERMINAL)
        return event


class CallHandle:
    """One submitted call: its id, its progress events and its outcome."""

    def __init__(self, actor: Any, call_id: str) -> None:
        self._actor = actor
        self.call_id = call_id

    def __repr__(self) -> str:
        return f"<CallHandle {self.call_id}>"

    def events(self) -> CallEvents:
        """Every event of the call from its first; ends after ``Finished``, ``Refused`` or ``Failed``."""
        return CallEvents(self._actor, self.call_id)

    async def outcome(self) -> CallOutcome:
        """The call's outcome, once it ends.

        Raises:
            CallRefused: no capacity before the deadline.
            CallFailed: the call failed (its agent raised, its hosts died too often, ...).
        """
        last = None
        while last is None:  # asked again every POLL_S: under trio each wait holds a worker thread
            last = await _get(self._actor.outcome.remote(self.call_id, POLL_S))
        if isinstance(last, Finished):
            return last.outcome
        if isinstance(last, Refused):
            raise CallRefused(f"call {self.call_id} refused: {last.reason}")
        assert isinstance(last, Failed)
        raise CallFailed(f"call {self.call_id} failed: {last.error}")


class Dispatcher:
    """Places calls on call hosts; see the module docstring. Create with :meth:`start`."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._agents: set[str] = set()  # agent paths already resolved here

    @classmethod
    async def start(
        cls,
        *,
        hosts: int = 1,
        capacity: int = 4,
        queue_timeout: float = 30.0,
        host_cpus: float = 1.0,
        replace_dead: bool = True,
    ) -> Dispatcher:
        """Start a dispatcher and its hosts on the connected Ray cluster (``engine.scale.cluster.connect``).

        Raises:
            UsageError: not connected to a Ray cluster.
            ValueError: ``hosts`` or ``capacity`` below 1, a negative ``queue_timeout`` or
                ``host_cpus`` (a ``UsageValueError``).
        """
        if hosts < 1 or capacity < 1:
            raise UsageValueError(f"hosts and capacity must be at least 1, got {hosts} and {capacity}")
        if not ray.is_initialized():
            raise UsageError("not connected to a Ray cluster: call engine.scale.cluster.connect() first")
        if queue_timeout < 0 or host_cpus < 0:
            raise UsageValueError(
                f"queue_timeout and host_cpus must be >= 0, got {queue_timeout}, {host_cpus}"
            )
        actor = DispatchActorClass.remote(hosts, capacity, queue_timeout, host_cpus, replace_dead)
        await _get(actor.start.remote())
        return cls(actor)

    async def submit(self, spec: CallSpec, *, queue_timeout: float | None = None) -> CallHandle:
        """Place a call; returns at once with its handle (the call may still wait for a slot).

        ``queue_timeout`` overrides the dispatcher's for this call.

        Raises:
            TypeError: ``spec`` is not a ``CallSpec`` (a ``UsageTypeError``).
            ValueError: a negative ``queue_timeout`` (a ``UsageValueError``).
            UnknownAgent: its agent path names no Agent here (checked once per path, before
                anything is placed; the hosts resolve it again, calling a factory for every call).
        """
        if not isinstance(spec, CallSpec):
            raise UsageTypeError(f"submit takes a CallSpec, got {type(spec).__name__}")
        if queue_timeout is not None and queue_timeout < 0:
            raise UsageValueError(f"queue_timeout must be >= 0, got {queue_timeout}")
        if spec.agent not in self._agents:
            resolve_agent(spec.agent)
            self._agents.add(spec.agent)
        call_id: str = await _get(self._actor.submit.remote(spec, queue_timeout))
        return CallHandle(self._actor, call_id)

    async def load(self) -> list[HostLoad]:
        """Every live host's load and health (answered even when a host's call loop is blocked)."""
        loads: list[HostLoad] = await _get(self._actor.load.remote())
        return loads

    async def stats(self) -> DispatchStats:
        """Calls queued, placed, refused, failed over, finished and failed, in all and per host."""
        stats: DispatchStats = await _get(self._actor.stats.remote())
        return stats

    async def hosts(self) -> dict[str, Any]:
        """The live hosts' Ray actor handles by name."""
        hosts: dict[str, Any] = await _get(self._actor.hosts.remote())
        return hosts

    async def aclose(self) -> None:
        """Stop every call and host, then the dispatcher."""
        await _get(self._actor.shutdown.remote())
        ray.kill(self._actor)
