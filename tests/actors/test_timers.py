"""The timers actor: one task while anything is armed, deadlines that move both ways, cancels that hold.

Each test runs the actor in its own task group: the group can only exit once
the timer task has ended, which is how "no task while nothing is armed" is
observed without peeking at internals.
"""

from __future__ import annotations

import anyio
import pytest

from engine.actors.timers import Timers

pytestmark = pytest.mark.anyio


class _Log:
    """What fired, when, on the loop clock; ``wait(n)`` returns once ``n`` timers fired."""

    def __init__(self) -> None:
        self.fired: list[tuple[str, float]] = []
        self._changed = anyio.Event()

    async def fire(self, name: str) -> None:
        self.fired.append((name, anyio.current_time()))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, n: int) -> None:
        while len(self.fired) < n:
            await self._changed.wait()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.fired]


async def test_timers_fire_in_deadline_order_and_the_task_ends() -> None:
    log = _Log()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = Timers(tg, log.fire, anyio.current_time)
            start = anyio.current_time()
            timers.arm("late", 0.06)
            timers.arm("early", 0.02)  # earlier than the sleep in progress: wakes it sooner
            await log.wait(2)
            assert timers.armed == frozenset()
    assert log.names == ["early", "late"]
    early_at, late_at = log.fired[0][1] - start, log.fired[1][1] - start
    assert 0.02 <= early_at < 0.06 <= late_at


async def test_cancelled_timer_never_fires() -> None:
    log = _Log()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = Timers(tg, log.fire, anyio.current_time)
            timers.arm("a", 0.02)
            timers.cancel("a")
            timers.arm("b", 0.04)
            await log.wait(1)
            timers.cancel("never-armed")  # harmless
        # The group exited: the task ended with nothing armed, and "a" never fired.
    assert log.names == ["b"]


async def test_cancel_of_the_only_timer_lets_the_task_end() -> None:
    log = _Log()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = Timers(tg, log.fire, anyio.current_time)
            timers.arm("a", 0.02)
            timers.cancel("a")
    assert log.fired == []


async def test_rearming_replaces_the_deadline_both_ways() -> None:
    log = _Log()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = Timers(tg, log.fire, anyio.current_time)
            start = anyio.current_time()
            timers.arm("a", 3600)
            timers.arm("a", 0.02)  # earlier: must not wait an hour
            await log.wait(1)
            again = anyio.current_time()
            timers.arm("b", 0.01)
            timers.arm("b", 0.05)  # later: the first deadline must not fire it
            await log.wait(2)
    assert log.names == ["a", "b"]
    assert log.fired[0][1] - start >= 0.02
    assert log.fired[1][1] - again >= 0.05


async def test_a_timer_armed_from_its_own_fire_runs_on_the_same_task() -> None:
    log = _Log()
    rounds: list[str] = []

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def fire(name: str) -> None:
                rounds.append(name)
                if len(rounds) < 3:
                    timers.arm(name, 0.005)  # re-armed while the task is busy firing
                await log.fire(name)

            timers = Timers(tg, fire, anyio.current_time)
            timers.arm("tick", 0.005)
            await log.wait(3)
    assert rounds == ["tick", "tick", "tick"]
