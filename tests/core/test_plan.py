"""The lookup plan the core steps by gives what the ``transitions`` machine gives, everywhere."""

from __future__ import annotations

import enum
import itertools
from typing import Any

import pytest
from transitions import MachineError

from engine.core.states import (
    CONVERSATION_TRANSITIONS,
    RESPONSE_TRANSITIONS,
    Phase,
    State,
    build,
    fire,
    plan_of,
    shared,
)

TABLES = [
    (State, CONVERSATION_TRANSITIONS, State.CONNECTING),
    (Phase, RESPONSE_TRANSITIONS, Phase.IDLE),
]


class _Model:
    """A model whose guards answer from a fixed assignment."""

    def __init__(self, state: str, guards: dict[str, bool]) -> None:
        self.state = state
        for name, value in guards.items():
            setattr(self, name, lambda value=value: value)


def _guard_names(table: list[dict[str, Any]]) -> list[str]:
    names = set()
    for t in table:
        conditions = t.get("conditions", [])
        names.update([conditions] if isinstance(conditions, str) else conditions)
    return sorted(names)


def _outcome(step: Any, model: _Model) -> tuple[Any, str]:
    try:
        result: Any = step(model)
    except MachineError:
        result = "refused"
    return result, model.state


@pytest.mark.parametrize(("states", "table", "initial"), TABLES, ids=["conversation", "response"])
def test_plan_agrees_with_the_machine(
    states: type[enum.StrEnum], table: list[dict[str, Any]], initial: enum.StrEnum
) -> None:
    machine = shared(states, table, initial)
    plan = plan_of(machine)
    guards = _guard_names(table)
    assert set(plan) == set(machine.events)
    compared = refused = moved = 0
    for state, trigger, values in itertools.product(
        [s.value for s in states], machine.events, itertools.product([False, True], repeat=len(guards))
    ):
        assignment = dict(zip(guards, values, strict=True))
        # A fresh machine with the model registered: the library's own answer.
        reference = _Model(state, assignment)
        build(reference, states, table, initial).set_state(state, reference)
        expected = _outcome(lambda m, t=trigger: getattr(m, t)(), reference)
        got = _outcome(lambda m, t=trigger: fire(plan, m, t), _Model(state, assignment))
        assert got == expected, (state, trigger, assignment)
        compared += 1
        refused += expected[0] == "refused"
        moved += expected[1] != state
    # The comparison covered refusals, guarded moves and internal transitions alike.
    assert refused > 0 and moved > 0 and compared > refused + moved


def test_plan_is_read_once_per_machine() -> None:
    machine = shared(State, CONVERSATION_TRANSITIONS, State.CONNECTING)
    assert plan_of(machine) is plan_of(machine)
