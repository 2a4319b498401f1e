"""The session lifecycle machine, synchronously: the table's paths, its guard, and what it refuses."""

from __future__ import annotations

import pytest
from transitions import MachineError

from engine.core.lifecycle import LIFECYCLE_TRANSITIONS, Lifecycle, LifecycleMachine
from engine.core.states import build

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


@pytest.mark.parametrize("guard", [True, False])
def test_the_stepping_object_agrees_with_the_transitions_machine(guard: bool) -> None:
    """Every (state, trigger): the fast plan and ``transitions`` reach the same state (or both refuse)."""

    class Model:
        state = ""

        def between_turns(self) -> bool:
            return guard

    triggers = sorted({t["trigger"] for t in LIFECYCLE_TRANSITIONS})
    for state in Lifecycle:
        for trigger in triggers:
            model = Model()
            reference = build(model, Lifecycle, LIFECYCLE_TRANSITIONS, state)
            ours = LifecycleMachine(lambda: guard)
            ours.state = state.value
            try:
                reference.events[trigger].trigger(model)
            except MachineError:
                with pytest.raises(MachineError):
                    ours.fire(trigger)
                continue
            ours.fire(trigger)
            assert ours.state == model.state, (state, trigger)
