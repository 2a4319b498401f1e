"""The committed diagram is exactly what the code draws."""

from __future__ import annotations

from pathlib import Path

import engine
from engine.core.diagram import diagram
from engine.core.states import CONVERSATION_TRANSITIONS, RESPONSE_TRANSITIONS, Phase, State

DIAGRAM = Path(__file__).resolve().parent.parent / "diagrams" / "conversation.mmd"


def test_committed_diagram_matches_code() -> None:
    """Regenerate with ``python -m engine diagram`` when this fails."""
    assert DIAGRAM.read_text(encoding="utf-8") == engine.diagram()


def test_diagram_names_every_state_and_trigger() -> None:
    text = engine.diagram()
    for state in State:
        assert f"conversation__{state.value}" in text
    for phase in Phase:
        assert f"response__{phase.value}" in text
    for transition in CONVERSATION_TRANSITIONS + RESPONSE_TRANSITIONS:
        assert transition["trigger"] in text


def test_highlighted_diagram_marks_current_states() -> None:
    text = diagram(State.AWAITING_TOOL, Phase.CANCELLING)
    assert "class conversation__awaiting_tool s_active" in text
    assert "class response__cancelling s_active" in text
    assert "class conversation__session_ready s_active" not in text


def test_cli_writes_the_diagram(tmp_path: Path) -> None:
    from engine.cli import main

    assert main(["diagram", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "conversation.mmd").read_text(encoding="utf-8") == engine.diagram()
