"""The dispatcher: places calls on call hosts, with exact admission, a queue deadline and failover.

:class:`Dispatcher` is the handle a program uses (under trio or asyncio);
it drives a Ray actor (:class:`DispatchActor`, asyncio inside) that owns the
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

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from typing import Any

import anyio
import attrs
import sniffio

from engine.errors import UsageTypeError, UsageValueError
from engine.scale.cluster import require_ray
from engine.scale.dispatch_stats import DispatchStats, HostStats
from engine.scale.host import Accepted, CallHostActor, HostLoad
from engine.scale.spec import (
    TERMINAL,
    CallFailed,
    CallOutcome,
    CallRefused,
    CallSpec,
    Checkpoint,
    Checkpointed,
    Event,
    Failed,
    FailedOver,
    Finished,
    Placed,
    Queued,
    Refused,
    resolve_agent,
)

ray = require_ray()
log = logging.getLogger(__name__)

POLL_S = 10.0
"""A driver's wait for new events returns empty after this long (then it asks again)."""
LOAD_TIMEOUT_S = 2.0
"""A host whose monitor does not answer ``load()`` within this is reported unreachable."""


class NoCapacity(Exception):
    """No host had a free slot before the call's queue deadline."""


@attrs.define(eq=False)
class _Host:
    name: str
    actor: Any
    capacity: int
    active: int = 0
    stats: HostStats = attrs.Factory(lambda self: HostStats(host=self.name), takes_self=True)


@attrs.define(eq=False)
class _Call:
    spec: CallSpec
    queue_timeout: float
    events: list[Event] = attrs.Factory(list)
    changed: asyncio.Event = attrs.Factory(asyncio.Event)
    done: asyncio.Event = attrs.Factory(asyncio.Event)

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()
        self.changed = asyncio.Event()
        if isinstance(event, TERMINAL):
            self.done.set()


class DispatchActor:
    """The dispatcher's state and decisions, on one asyncio loop (see the module docstring)."""

    def __init__(
        self, hosts: int, capacity: int, queue_timeout: float, host_cpus: float, replace_dead: bool
    ) -> None:
        self._capacity = capacity
        self._queue_timeout = queue_timeout
        self._host_cpus = host_cpus
        self._replace = replace_dead
        self._wanted = hosts
        self._numbers = itertools.count()
        self._hosts: dict[str, _Host] = {}
        self._gone: dict[str, HostStats] = {}
        self._calls: dict[str, _Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Condition()
        self._stats = DispatchStats()

    async def start(self) -> list[str]:
        """Start the hosts; their names once every one is ready."""
        await asyncio.gather(*(self._new_host() for _ in range(self._wanted)))
        return list(self._hosts)

    async def _new_host(self) -> None:
        name = f"host-{next(self._numbers)}"
        actor = CallHostActor.options(num_cpus=self._host_cpus, max_restarts=0).remote(name, self._capacity)
        await actor.start.remote()
        async with self._slots:
            self._hosts[name] = _Host(name=name, actor=actor, capacity=self._capacity)
            self._slots.notify_all()
        log.info("host %s is up (capacity %d)", name, self._capacity)

    # ------------------------------------------------------------------ the driver's calls

    async def submit(self, spec: CallSpec, queue_timeout: float | None) -> str:
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        wait = self._queue_timeout if queue_timeout is None else queue_timeout
        self._calls[call_id] = _Call(spec=spec, queue_timeout=wait)
        task = asyncio.get_running_loop().create_task(self._run(call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call_id

    async def events(self, call_id: str, since: int, wait: float) -> list[Event]:
        """The call's events from number ``since`` on; waits up to ``wait`` seconds for one."""
        call = self._known(call_id)
        if len(call.events) <= since and not call.done.is_set():
            changed = call.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)
        return call.events[since:]

    async def outcome(self, call_id: str) -> Event:
        """The call's last event (``Finished``, ``Refused`` or ``Failed``), once it comes."""
        call = self._known(call_id)
        await call.done.wait()
        return call.events[-1]

    async def load(self) -> list[HostLoad]:
        """Every live host's load, asked of its monitor thread (an unreachable host says so)."""
        hosts = list(self._hosts.values())

        async def one(host: _Host) -> HostLoad:
            try:
                load: HostLoad = await asyncio.wait_for(host.actor.load.remote(), LOAD_TIMEOUT_S)
            except (TimeoutError, ray.exceptions.RayError):
                return HostLoad.unreachable(host.name, host.capacity)
            return load

        return list(await asyncio.gather(*(one(h) for h in hosts)))

    async def stats(self) -> DispatchStats:
        hosts = [h.stats for h in self._hosts.values()] + list(self._gone.values())
        return attrs.evolve(self._stats, hosts=tuple(sorted(hosts, key=lambda h: h.host)))

    async def hosts(self) -> dict[str, Any]:
        """The live hosts' actor handles by name (``ray.kill`` one to see a failover)."""
        return {name: host.actor for name, host in self._hosts.items()}

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for host in list(self._hosts.values()):
            ray.kill(host.actor)
        self._hosts.clear()

    def _known(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            raise UsageValueError(f"no call {call_id!r} on this dispatcher")
        return call

    # ------------------------------------------------------------------ placement

    async def _place(self, call_id: str, call: _Call) -> _Host:
        """Take a slot on the least-loaded host, waiting up to ``queue_timeout`` for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + call.queue_timeout
        async with self._slots:
            host = self._pick()
            if host is None:
                self._stats.queued += 1
                call.emit(Queued(call_id=call_id))
            while host is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise NoCapacity
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slots.wait(), remaining)
                host = self._pick()
            host.active += 1  # taken with no await since the pick: admission is atomic
            return host

    def _pick(self) -> _Host | None:
        free = [h for h in self._hosts.values() if h.active < h.capacity]
        return min(free, key=lambda h: (h.active / h.capacity, h.name), default=None)

    async def _release(self, host: _Host) -> None:
        async with self._slots:
            host.active -= 1
            self._slots.notify_all()

    async def _host_died(self, host: _Host) -> None:
        async with self._slots:
            if self._hosts.pop(host.name, None) is None:
                return  # another of its calls reported it first
            host.stats = attrs.evolve(host.stats, alive=False)
            self._gone[host.name] = host.stats
        log.warning("host %s died; its calls fail over", host.name)
        if self._replace:
            task = asyncio.get_running_loop().create_task(self._new_host())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ one call

    async def _run(self, call_id: str) -> None:
        call = self._calls[call_id]
        spec = call.spec
        checkpoint: Checkpoint | None = None
        attempt = 0
        died: str | None = None
        since = time.perf_counter()  # Ray's loop may be uvloop's: its loop.time() counts whole ms
        while True:
            try:
                host = await self._place(call_id, call)
            except NoCapacity:
                self._stats.refused += 1
                reason = f"no host had a free slot within queue_timeout={call.queue_timeout}s"
                call.emit(Refused(call_id=call_id, reason=reason))
                return
            try:
                stream = host.actor.run_call.options(num_returns="streaming").remote(
                    call_id, spec, checkpoint, attempt
                )
                outcome: CallOutcome | None = None
                async for ref in stream:
                    record = await ref
                    if isinstance(record, Accepted):
                        if died is not None:
                            self._stats.failed_over += 1
                            call.emit(FailedOver(call_id=call_id, from_host=died, to_host=host.name))
                        self._stats.placed += 1
                        host.stats = attrs.evolve(host.stats, placed=host.stats.placed + 1)
                        resumed = checkpoint is not None
                        waited = time.perf_counter() - since
                        call.emit(Placed(call_id=call_id, host=host.name, resumed=resumed, seconds=waited))
                    elif isinstance(record, Checkpoint):
                        checkpoint = record
                        opened = len(record.open_calls())
                        call.emit(
                            Checkpointed(call_id=call_id, host=host.name, done=record.done, open_calls=opened)
                        )
                    else:
                        outcome = record
                if outcome is None:
                    self._fail(call_id, call, f"host {host.name} ended the call without an outcome")
                    return
                self._stats.finished += 1
                host.stats = attrs.evolve(host.stats, finished=host.stats.finished + 1)
                call.emit(Finished(outcome=outcome))
                return
            except ray.exceptions.RayActorError:
                await self._host_died(host)
                if attempt >= spec.max_failovers:
                    self._fail(
                        call_id, call, f"host {host.name} died and the call used its {attempt} failovers"
                    )
                    return
                attempt, died, since = attempt + 1, host.name, time.perf_counter()
            except Exception as exc:  # what the call raised on its host (RayTaskError wraps it)
                cause = getattr(exc, "cause", None) or exc
                self._fail(call_id, call, f"{type(cause).__name__}: {cause}")
                return
            finally:
                await self._release(host)

    def _fail(self, call_id: str, call: _Call, error: str) -> None:
        log.warning("call %s failed: %s", call_id, error)
        self._stats.failed += 1
        call.emit(Failed(call_id=call_id, error=error))


_DispatchActor: Any = ray.remote(num_cpus=0)(DispatchActor)


# ---------------------------------------------------------------------- the driver's handle


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
        last = await _get(self._actor.outcome.remote(self.call_id))
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
            ValueError: ``hosts`` or ``capacity`` below 1, a negative ``queue_timeout`` or
                ``host_cpus`` (a ``UsageValueError``).
        """
        if hosts < 1 or capacity < 1:
            raise UsageValueError(f"hosts and capacity must be at least 1, got {hosts} and {capacity}")
        if queue_timeout < 0 or host_cpus < 0:
            raise UsageValueError(
                f"queue_timeout and host_cpus must be >= 0, got {queue_timeout}, {host_cpus}"
            )
        actor = _DispatchActor.remote(hosts, capacity, queue_timeout, host_cpus, replace_dead)
        await _get(actor.start.remote())
        return cls(actor)

    async def submit(self, spec: CallSpec, *, queue_timeout: float | None = None) -> CallHandle:
        """Place a call; returns at once with its handle (the call may still wait for a slot).

        ``queue_timeout`` overrides the dispatcher's for this call.

        Raises:
            TypeError: ``spec`` is not a ``CallSpec`` (a ``UsageTypeError``).
            ValueError: a negative ``queue_timeout`` (a ``UsageValueError``).
            UnknownAgent: its agent path names no Agent here (checked before anything is placed).
        """
        if not isinstance(spec, CallSpec):
            raise UsageTypeError(f"submit takes a CallSpec, got {type(spec).__name__}")
        if queue_timeout is not None and queue_timeout < 0:
            raise UsageValueError(f"queue_timeout must be >= 0, got {queue_timeout}")
        resolve_agent(spec.agent)
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
