"""The lookup plan the core steps by gives what the ``transitions`` machine gives, everywhere."""

from __future__ import annotations

import enum
import itertools
from typing import Any

import pytest
from transitions import MachineError

from engine.core.states import (
    CONVERSATION_TRANSITIONS,
    MACHINES,
    MachineSpec,
    State,
    build,
    callbacks_of,
    fire,
    plan_of,
    shared,
)


class _Model:
    """A model whose guards answer from a fixed assignment and whose actions log their names."""

    def __init__(self, state: str, guards: dict[str, bool], actions: set[str]) -> None:
        self.state = state
        self.log: list[str] = []
        for name, value in guards.items():
            setattr(self, name, lambda value=value: value)
        for name in actions:
            setattr(self, name, lambda name=name: self.log.append(name))


def _guard_names(table: list[dict[str, Any]]) -> list[str]:
    names = set()
    for t in table:
        for key in ("conditions", "unless"):
            conditions = t.get(key, [])
            names.update([conditions] if isinstance(conditions, str) else conditions)
    return sorted(names)


def _outcome(step: Any, model: _Model) -> tuple[Any, str, list[str]]:
    try:
        result: Any = step(model)
    except MachineError:
        result = "refused"
    return result, model.state, model.log


@pytest.mark.parametrize("spec", MACHINES, ids=[spec.name for spec in MACHINES])
def test_plan_agrees_with_the_machine(spec: MachineSpec) -> None:
    """Same result, same state and the same actions in the same order, everywhere."""
    states: type[enum.StrEnum] = spec.states
    machine = shared(states, spec.table, spec.initial, spec.actions)
    plan = plan_of(machine)
    guards = _guard_names(spec.table)
    actions = callbacks_of(spec) - set(guards)
    assert set(plan) == set(machine.events)
    compared = refused = moved = acted = 0
    for state, trigger, values in itertools.product(
        [s.value for s in states], machine.events, itertools.product([False, True], repeat=len(guards))
    ):
        assignment = dict(zip(guards, values, strict=True))
        # A fresh machine with the model registered: the library's own answer.
        reference = _Model(state, assignment, actions)
        build(reference, states, spec.table, spec.initial, spec.actions).set_state(state, reference)
        expected = _outcome(lambda m, t=trigger: getattr(m, t)(), reference)
        got = _outcome(lambda m, t=trigger: fire(plan, m, t), _Model(state, assignment, actions))
        assert got == expected, (state, trigger, assignment)
        compared += 1
        refused += expected[0] == "refused"
        moved += expected[1] != state
        acted += bool(expected[2])
    # The comparison covered moves and internal transitions, and actions where there are any.
    assert moved > 0 and compared > refused + moved
    assert acted > 0 or not actions


def test_the_owed_and_user_turn_machines_accept_every_trigger_everywhere() -> None:
    """Their triggers are facts about the conversation: none is ever illegal, whatever the state."""
    for spec in MACHINES:
        if spec.name not in ("owed", "user_turn"):
            continue
        plan = plan_of(shared(spec.states, spec.table, spec.initial, spec.actions))
        for trigger, sources in plan.items():
            assert set(sources) == {s.value for s in spec.states}, (spec.name, trigger)
            for steps in sources.values():
                assert not steps[-1][0], (spec.name, trigger)  # the last step has no guard


def test_plan_is_read_once_per_machine() -> None:
    machine = shared(State, CONVERSATION_TRANSITIONS, State.CONNECTING)
    assert plan_of(machine) is plan_of(machine)
