"""The dispatcher's actor: the hosts, the calls, admission, the queue deadline and failover.

:class:`DispatchActor` runs on one asyncio loop inside Ray, so choosing a host
and taking its slot happen with no await between them: admission is atomic,
whatever the burst. Each call is a task that places it (least-loaded), reads
its host's ``run_call`` stream, and on the host's death places it again with
its last checkpoint. Programs use it through :class:`engine.scale.dispatcher.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
import uuid
from typing import Any

import attrs

from engine.errors import UsageValueError
from engine.scale.cluster import require_ray
from engine.scale.dispatch_stats import DispatchStats, HostStats
from engine.scale.host import Accepted, CallHostActor, HostLoad
from engine.scale.spec import (
    TERMINAL,
    CallOutcome,
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
)

ray = require_ray()
log = logging.getLogger(__name__)

POLL_S = 10.0
"""A driver's wait for events or an outcome returns empty after this long (then it asks again)."""
KEEP_ENDED = 10_000
"""Ended calls whose events and outcome are kept (older ones are forgotten)."""
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
        self._ended: collections.deque[str] = collections.deque()  # oldest first, forgotten past KEEP_ENDED
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

    async def _replacement(self) -> None:
        try:
            await self._new_host()
        except Exception:
            log.exception("a replacement host did not start; the pool is one host smaller")

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

    async def outcome(self, call_id: str, wait: float) -> Event | None:
        """The call's last event (``Finished``, ``Refused``, ``Failed``); ``None`` if none within ``wait``."""
        call = self._known(call_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.done.wait(), wait)
        return call.events[-1] if call.done.is_set() else None

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
            raise UsageValueError(
                f"no call {call_id!r} on this dispatcher (or it ended before the last {KEEP_ENDED} kept)"
            )
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
        # Fence it: a host that is only unreachable (ActorUnavailableError) must not run on
        # beside the calls' new hosts.
        ray.kill(host.actor)
        log.warning("host %s died or became unreachable; its calls fail over", host.name)
        if self._replace:
            task = asyncio.get_running_loop().create_task(self._replacement())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ one call

    async def _run(self, call_id: str) -> None:
        try:
            await self._attempts(call_id)
        finally:
            self._ended_call(call_id)

    async def _attempts(self, call_id: str) -> None:
        """Place the call, read its stream; on its host's death, place it again from its checkpoint."""
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

    def _ended_call(self, call_id: str) -> None:
        self._ended.append(call_id)
        while len(self._ended) > KEEP_ENDED:
            self._calls.pop(self._ended.popleft(), None)

    def _fail(self, call_id: str, call: _Call, error: str) -> None:
        log.warning("call %s failed: %s", call_id, error)
        self._stats.failed += 1
        call.emit(Failed(call_id=call_id, error=error))


DispatchActorClass: Any = ray.remote(num_cpus=0)(DispatchActor)
"""``DispatchActor`` as a Ray actor class."""
