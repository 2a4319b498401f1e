"""The committed diagram is exactly what the code draws."""

from __future__ import annotations

from pathlib import Path

import engine
from engine.core.diagram import diagram
from engine.core.states import MACHINES, Owed, Phase, State

DIAGRAM = Path(__file__).resolve().parent.parent / "diagrams" / "conversation.mmd"


def test_committed_diagram_matches_code() -> None:
    """Regenerate with ``python -m engine diagram`` when this fails."""
    assert DIAGRAM.read_text(encoding="utf-8") == engine.diagram()


def test_diagram_names_every_state_and_trigger() -> None:
    text = engine.diagram()
    for spec in MACHINES:
        for state in spec.states:
            assert f"engine__{spec.name}__{state.value}" in text
        for transition in spec.table:
            assert transition["trigger"] in text


def test_the_machines_are_concurrent_regions() -> None:
    """One composite state holds every machine, separated by ``--``: they run at once."""
    text = engine.diagram()
    body = text[text.index("state engine {") :]
    assert body.count("\n    --\n") == len(MACHINES) - 1
    for spec in MACHINES:
        assert f"[*] --> engine__{spec.name}__{spec.initial.value}" in body


def test_highlighted_diagram_marks_current_states() -> None:
    text = diagram(State.AWAITING_TOOL, Phase.CANCELLING, owed=Owed.TOOL_FOLLOWUP)
    assert "class engine__conversation__awaiting_tool s_active" in text
    assert "class engine__response__cancelling s_active" in text
    assert "class engine__owed__tool_followup s_active" in text
    assert "class engine__conversation__session_ready s_active" not in text


def test_cli_writes_the_diagram(tmp_path: Path) -> None:
    from engine.cli import main

    assert main(["diagram", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "conversation.mmd").read_text(encoding="utf-8") == engine.diagram()
