"""The state diagram, drawn by ``transitions``' Mermaid engine from the tables in :mod:`engine.core.states`.

Kept apart from the tables because ``transitions.extensions`` imports asyncio,
and the core must import no I/O.
"""

from __future__ import annotations

from typing import Any

from engine.core.states import CONVERSATION_TRANSITIONS, RESPONSE_TRANSITIONS, Phase, State, values


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

    model = _Model()
    tables: dict[str, list[dict[str, Any]]] = {
        "conversation__": CONVERSATION_TRANSITIONS,
        "response__": RESPONSE_TRANSITIONS,
    }
    _DiagramMachine(
        model=model,
        states=[
            {"name": "conversation", "children": [s.value for s in State], "initial": State.CONNECTING.value},
            {"name": "response", "children": [s.value for s in Phase], "initial": Phase.IDLE.value},
        ],
        transitions=[values(t, prefix) for prefix, table in tables.items() for t in table],
        initial="conversation",
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="engine conversation",
    )
    source: str = model.get_graph().source  # type: ignore[attr-defined]
    return source


def diagram(state: State | None = None, phase: Phase | None = None) -> str:
    """The Mermaid text of both machines; with ``state``/``phase``, those are highlighted."""
    text = _graph_source().rstrip() + "\n"
    marks = [] if state is None else [f"conversation__{state.value}"]
    marks += [] if phase is None else [f"response__{phase.value}"]
    return text + "".join(f"  class {m} s_active\n" for m in marks)
