"""The state diagram, drawn by ``transitions``' Mermaid engine from :data:`engine.core.states.MACHINES`.

Every machine is a concurrent region of one composite state (Mermaid's ``--``
separators), because they all run at once. Arrows carry the trigger, its
actions after a ``/`` and its guards in brackets; states list their entry and
exit actions. A transition that stays where it is with no guard and no action
is not drawn: it only makes the trigger legal there and changes nothing.

Kept apart from the tables because ``transitions.extensions`` imports asyncio,
and the core must import no I/O.
"""

from __future__ import annotations

import enum
from typing import Any

from engine.core.states import MACHINES, Phase, State, values

ROOT = "engine"


def _graph_source() -> str:
    from transitions.extensions import HierarchicalGraphMachine
    from transitions.extensions.nesting import NestedState

    class _DiagramState(NestedState):
        # Our state names contain "_", the default nesting separator.
        separator = "__"

    class _DiagramMachine(HierarchicalGraphMachine):
        state_cls = _DiagramState

    class _Model:
        pass

    def state(spec_actions: dict[enum.StrEnum, dict[str, list[str]]], s: enum.StrEnum) -> dict[str, Any]:
        return {"name": s.value, **spec_actions.get(s, {})}

    regions = [
        {
            "name": spec.name,
            "children": [state(spec.actions, s) for s in spec.states],
            "initial": spec.initial.value,
        }
        for spec in MACHINES
    ]
    model = _Model()
    _DiagramMachine(
        model=model,
        states=[{"name": ROOT, "parallel": regions}],
        transitions=[
            _drawn(t, f"{ROOT}__{spec.name}__") for spec in MACHINES for t in spec.table if _shown(t)
        ],
        initial=ROOT,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        show_state_attributes=True,
        title="engine conversation",
    )
    source: str = model.get_graph().source  # type: ignore[attr-defined]
    return source


def _names(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _shown(transition: dict[str, Any]) -> bool:
    keys = ("conditions", "unless", "before", "after")
    return transition["dest"] is not None or any(transition.get(k) for k in keys)


def _drawn(transition: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = values(transition, prefix)
    actions = _names(transition.get("before")) + _names(transition.get("after"))
    if actions:
        out["label"] = f"{transition['trigger']} / {', '.join(actions)}"
    return out


def diagram(state: State | None = None, phase: Phase | None = None, **others: enum.StrEnum) -> str:
    """The Mermaid text of every machine; the states given (by machine name) are highlighted."""
    text = _graph_source().rstrip() + "\n"
    current: dict[str, enum.StrEnum | None] = {"conversation": state, "response": phase, **others}
    marks = [f"{ROOT}__{name}__{s.value}" for name, s in current.items() if s is not None]
    return text + "".join(f"  class {m} s_active\n" for m in marks)
