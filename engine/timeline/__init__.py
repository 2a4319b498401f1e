"""The picture of a call: a recording drawn as a self-contained HTML timeline.

``engine timeline CALL.jsonl -o call.html`` (and ``engine demo --timeline
FILE``) renders a recording made with ``Session(record=...)``: swimlanes for
every state machine, the user's speech, the assistant's audio (heard and cut),
tool calls, the connection, errors and per-turn latency, on one time axis. The
page is one file with inline SVG, CSS and a few lines of script: it opens
offline. Rendering is a pure function of the records.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.timeline.model import Call, Lane, read_call
from engine.timeline.page import page
from engine.timeline.shapes import Mark, Span


def render(records: Iterable[dict[str, Any]], *, title: str = "call") -> str:
    """The HTML page of a recording's records (the meta record first)."""
    return page(read_call(records), title=title)


def render_file(path: str | Path) -> str:
    """The HTML page of the recording at ``path``."""
    from engine.record import read

    return render(read(path), title=Path(path).name)


__all__ = ["Call", "Lane", "Mark", "Span", "read_call", "render", "render_file"]
