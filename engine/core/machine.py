"""Building and stepping the machines that :mod:`engine.core.states` declares.

A table becomes a plain synchronous ``transitions.Machine`` (:func:`build`),
one per table shared by every model (:func:`shared`); the core steps its
models through the machine's lookup plan (:func:`plan_of`, :func:`fire`),
which runs guards and actions in the order ``transitions`` does. The
declarations themselves, and the coupling between machines, live in
:mod:`engine.core.states`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from transitions import Machine, MachineError

_declared: dict[int, Any] = {}  # each declared table's state actions, by the table's id


@attrs.frozen(kw_only=True)
class MachineSpec:
    """One machine: its name, states, table, initial state and state actions (entry/exit)."""

    name: str
    states: type[enum.StrEnum]
    table: list[dict[str, Any]]
    initial: enum.StrEnum
    actions: dict[enum.StrEnum, dict[str, list[str]]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        _declared[id(self.table)] = self.actions


Actions = dict[enum.StrEnum, dict[str, list[str]]]
"""Entry and exit actions by state: ``{state: {"on_enter": [...], "on_exit": [...]}}``."""


def build(
    model: Any,
    states: type[enum.StrEnum],
    table: list[dict[str, Any]],
    initial: enum.StrEnum,
    actions: Actions | None = None,
) -> Machine:
    """A plain synchronous machine over ``model`` (which gets ``model.state``)."""
    actions = actions or {}
    return Machine(
        model=model,
        states=[{"name": s.value, **actions.get(s, {})} for s in states],
        transitions=[values(t) for t in table],
        initial=initial.value,
        auto_transitions=False,
        send_event=False,
    )


_shared: dict[int, Machine] = {}


def shared(
    states: type[enum.StrEnum],
    table: list[dict[str, Any]],
    initial: enum.StrEnum,
    actions: Actions | None = None,
) -> Machine:
    """One machine per table, shared by every conversation (its models are not registered).

    A ``transitions`` machine costs tens of kilobytes; a session only needs its
    own ``state`` attribute, so all sessions step their own small model objects
    through the same machine (by its :func:`plan_of`).
    """
    machine = _shared.get(id(table))
    if machine is None:
        if actions is None:  # a declared machine always has its state actions
            actions = _declared.get(id(table))
        machine = _shared[id(table)] = build(None, states, table, initial, actions)
    return machine


Step = tuple[tuple[tuple[str, bool], ...], str | None, tuple[str, ...], tuple[str, ...]]
"""One transition of a trigger from a source: its guards (name, expected result), destination,
and the actions run before and after the state is set (``before`` and the source's exit
actions; the destination's entry actions and ``after``), as ``transitions`` orders them."""
Plan = dict[str, dict[str, tuple[Step, ...]]]
"""A machine's transitions by trigger, then source state, in the machine's order."""

_plans: dict[int, Plan] = {}


def _names(callbacks: Any) -> tuple[str, ...]:
    return tuple(str(c) for c in callbacks)


def plan_of(machine: Machine) -> Plan:
    """The machine's own transitions, read into nested dicts for :func:`fire`.

    ``transitions`` resolves a trigger through several layers of objects (some
    microseconds), and the core fires one every few server events. The plan is
    read from the built machine, not from the tables, so the machine stays the
    one definition; a test checks that both agree on every state, trigger and
    guard outcome, actions included. Only what the tables use is supported:
    named guards and named actions (``before``/``after``, ``on_enter``/``on_exit``).
    """
    plan = _plans.get(id(machine))
    if plan is None:
        plan = {}
        for trigger, event in machine.events.items():
            plan[trigger] = {}
            for source, transitions in event.transitions.items():
                steps: list[Step] = []
                for t in transitions:
                    guards = tuple((str(c.func), c.target) for c in t.conditions)
                    pre, post = _names(t.before), _names(t.after)
                    if t.dest is not None:  # an internal transition runs no exit or entry actions
                        pre += _names(machine.get_state(source).on_exit)
                        post = _names(machine.get_state(t.dest).on_enter) + post
                    steps.append((guards, t.dest, pre, post))
                plan[trigger][source] = tuple(steps)
        _plans[id(machine)] = plan
    return plan


def fire(plan: Plan, model: Any, trigger: str) -> bool:
    """Trigger like ``machine.events[trigger].trigger(model)``: False when no guard passes.

    Raises ``transitions.MachineError`` when ``trigger`` is not allowed in the model's state.
    """
    steps = plan[trigger].get(model.state)
    if steps is None:
        raise MachineError(f"{trigger!r} is not allowed in state {model.state!r}")
    for guards, dest, pre, post in steps:
        for name, expected in guards:
            if getattr(model, name)() != expected:
                break
        else:
            for name in pre:
                getattr(model, name)()
            if dest is not None:
                model.state = dest
            for name in post:
                getattr(model, name)()
            return True
    return False


def callbacks_of(spec: MachineSpec) -> set[str]:
    """Every guard and action name a machine's table and state actions use."""
    names: set[str] = set()
    for t in spec.table:
        for key in ("conditions", "unless", "before", "after"):
            value = t.get(key, [])
            names.update([value] if isinstance(value, str) else value)
    for hooks in spec.actions.values():
        for value in hooks.values():
            names.update(value)
    return names


def values(transition: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Enum members to plain names (``transitions`` keys states by name)."""

    def name(s: Any) -> Any:
        if s is None:
            return None
        return f"{prefix}{s.value}" if isinstance(s, enum.Enum) else s

    out = dict(transition)
    source = transition["source"]
    out["source"] = [name(s) for s in source] if isinstance(source, list) else name(source)
    out["dest"] = name(transition["dest"])
    return out
