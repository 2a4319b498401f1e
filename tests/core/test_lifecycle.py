"""The session lifecycle machine, synchronously: the table's paths, its guard, its actions, what it refuses.

That its fast plan agrees with ``transitions`` is checked with every machine in ``test_plan.py``.
"""

from __future__ import annotations

import pytest
from transitions import MachineError

from engine.core.lifecycle import (
    ANNOUNCE_RECONNECTED,
    ARM_ROLLOVER,
    CLOSE_SOCKET,
    Lifecycle,
    LifecycleMachine,
)
from engine.core.states import MACHINES

L = Lifecycle


def run(triggers: list[str], *, between_turns: bool = True) -> list[Lifecycle]:
    machine = LifecycleMachine(lambda: between_turns)
    seen = []
    for trigger in triggers:
        machine.fire(trigger)
        seen.append(machine.current)
    return seen


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        # The first connect retries without leaving connecting; Reconnected is only for a session once open.
        (["start", "dropped", "dropped", "ready"], [L.CONNECTING, L.CONNECTING, L.CONNECTING, L.OPEN]),
        (["start", "ready", "dropped", "dropped", "ready"],
         [L.CONNECTING, L.OPEN, L.RECONNECTING, L.RECONNECTING, L.OPEN]),
        # A due rollover rolls over at a turn boundary; the planned drop reconnects like any other.
        (["start", "ready", "rollover_due", "turn_boundary", "dropped", "ready"],
         [L.CONNECTING, L.OPEN, L.ROLLOVER_DUE, L.ROLLING_OVER, L.RECONNECTING, L.OPEN]),
        # reset() rolls over at once, due or not.
        (["start", "ready", "reset"], [L.CONNECTING, L.OPEN, L.ROLLING_OVER]),
        (["start", "ready", "rollover_due", "reset"], [L.CONNECTING, L.OPEN, L.ROLLOVER_DUE, L.ROLLING_OVER]),
        # A drop while due: the new socket is fresh (its ready re-arms the duration).
        (["start", "ready", "rollover_due", "dropped", "ready"],
         [L.CONNECTING, L.OPEN, L.ROLLOVER_DUE, L.RECONNECTING, L.OPEN]),
        # A duration elapsing while no socket is up is moot.
        (["start", "ready", "dropped", "rollover_due"],
         [L.CONNECTING, L.OPEN, L.RECONNECTING, L.RECONNECTING]),
        (["close", "finished"], [L.CLOSING, L.CLOSED]),
        (["start", "ready", "close", "ready", "finished"],
         [L.CONNECTING, L.OPEN, L.CLOSING, L.CLOSING, L.CLOSED]),
    ],
)
def test_paths(triggers: list[str], expected: list[Lifecycle]) -> None:
    assert run(triggers) == expected


def test_a_due_rollover_waits_for_the_turn_boundary() -> None:
    between = False
    machine = LifecycleMachine(lambda: between)
    for trigger in ("start", "ready", "rollover_due"):
        machine.fire(trigger)
    assert machine.fire("turn_boundary") is False
    assert machine.current is L.ROLLOVER_DUE
    between = True
    assert machine.fire("turn_boundary") is True
    assert machine.current is L.ROLLING_OVER


@pytest.mark.parametrize("state", [s for s in Lifecycle if s not in (L.CLOSING, L.CLOSED)])
def test_close_is_allowed_from_every_state_before_closing(state: Lifecycle) -> None:
    machine = LifecycleMachine()
    machine.state = state.value
    machine.fire("close")
    assert machine.current is L.CLOSING
    assert machine.ending


@pytest.mark.parametrize(
    ("state", "trigger"),
    [(L.NEW, "ready"), (L.OPEN, "finished"), (L.CLOSING, "close"), (L.CLOSED, "start"), (L.OPEN, "start"),
     (L.NEW, "dropped"), (L.CLOSED, "dropped")],
)
def test_what_the_table_does_not_allow_is_refused(state: Lifecycle, trigger: str) -> None:
    machine = LifecycleMachine()
    machine.state = state.value
    with pytest.raises(MachineError):
        machine.fire(trigger)
    assert machine.current is state


@pytest.mark.parametrize(
    ("triggers", "actions"),
    [
        (["start", "ready"], [ARM_ROLLOVER]),  # max_session_duration counts from ready
        (["start", "ready", "dropped", "ready"], [ARM_ROLLOVER, ARM_ROLLOVER, ANNOUNCE_RECONNECTED]),
        (["start", "dropped", "ready"], [ARM_ROLLOVER]),  # still the first connect: nothing to announce
        (["start", "ready", "rollover_due", "turn_boundary"], [ARM_ROLLOVER, CLOSE_SOCKET]),
        (["start", "ready", "reset", "reset"], [ARM_ROLLOVER, CLOSE_SOCKET]),  # one close for two resets
        (["start", "ready", "close", "finished"], [ARM_ROLLOVER]),  # closing is the supervisor's own
    ],
)
def test_steps_collect_the_declared_actions_in_order(triggers: list[str], actions: list[str]) -> None:
    machine = LifecycleMachine()
    for trigger in triggers:
        machine.fire(trigger)
    assert machine.take_actions() == actions
    assert machine.take_actions() == []


def test_the_lifecycle_is_a_registered_machine() -> None:
    (spec,) = [spec for spec in MACHINES if spec.name == "lifecycle"]
    assert spec.states is Lifecycle
    assert spec.initial is Lifecycle.NEW
