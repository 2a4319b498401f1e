"""The live view's state diagram: an SVG drawn on the server from the machines' tables.

Every machine of :data:`engine.core.states.MACHINES` is one region; its states
sit on an ellipse, each transition between two states is a curved arrow
labelled with its triggers (and guards, in brackets); transitions that stay in
place (``dest`` None) are not drawn. Each state is a ``<g class="state"
data-machine=... data-state=...>``, so the page highlights the current state
of each machine by toggling a class, without redrawing. Drawn from the tables
at request time: when a machine changes, the picture follows.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from engine.core.states import MACHINES

BOX_W, BOX_H = 128, 28
REGION_W, REGION_H = 560, 380
COLUMNS = 2


def _name(value: Any) -> str:
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def edges(table: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Labels by (source, destination) for every transition that moves: ``trigger [guard]``."""
    out: dict[tuple[str, str], list[str]] = {}
    for row in table:
        if row.get("dest") is None:
            continue
        guards = [*map(str, _list(row.get("conditions"))), *(f"!{u}" for u in _list(row.get("unless")))]
        label = str(row["trigger"]) + (f" [{', '.join(guards)}]" if guards else "")
        dest = _name(row["dest"])
        sources = _list(row["source"])
        for source in sources if sources != ["*"] else []:
            labels = out.setdefault((_name(source), dest), [])
            if label not in labels:
                labels.append(label)
    return out


def _border(cx: float, cy: float, tx: float, ty: float) -> tuple[float, float]:
    """Where the segment from a box's centre towards (tx, ty) leaves the box."""
    dx, dy = tx - cx, ty - cy
    if dx == 0 and dy == 0:
        return cx, cy
    scale = min(
        (BOX_W / 2) / abs(dx) if dx else math.inf,
        (BOX_H / 2) / abs(dy) if dy else math.inf,
    )
    return cx + dx * scale, cy + dy * scale


def region(name: str, states: Sequence[str], initial: str, table: Iterable[dict[str, Any]]) -> list[str]:
    """The SVG elements of one machine, in a REGION_W x REGION_H box at the origin."""
    cx, cy = REGION_W / 2, REGION_H / 2 + 12
    rx, ry = REGION_W / 2 - BOX_W / 2 - 14, REGION_H / 2 - BOX_H - 20
    at: dict[str, tuple[float, float]] = {}
    for i, state in enumerate(states):
        angle = math.pi + 2 * math.pi * i / max(1, len(states))  # the first state on the left
        at[state] = (cx + rx * math.cos(angle), cy + ry * math.sin(angle))
    out = [
        f'<rect class="region" x="2" y="2" width="{REGION_W - 4}" height="{REGION_H - 4}" rx="10"/>',
        f'<text class="region-title" x="14" y="24">{escape(name)}</text>',
    ]
    labels: list[str] = []
    for (source, dest), triggers in edges(table).items():
        if source not in at or dest not in at or source == dest:
            continue
        (x1, y1), (x2, y2) = at[source], at[dest]
        # Bend to the left of the direction of travel, so A->B and B->A do not overlap.
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        length = math.hypot(x2 - x1, y2 - y1) or 1.0
        bend = min(60.0, 0.18 * length)
        qx, qy = mx + (y2 - y1) / length * bend, my - (x2 - x1) / length * bend
        sx, sy = _border(x1, y1, qx, qy)
        ex, ey = _border(x2, y2, qx, qy)
        label = escape(", ".join(triggers))
        out.append(
            f'<path class="edge" data-from="{escape(source)}" data-to="{escape(dest)}" '
            f'd="M{sx:.1f},{sy:.1f} Q{qx:.1f},{qy:.1f} {ex:.1f},{ey:.1f}" marker-end="url(#arrow)">'
            f"<title>{escape(source)} → {escape(dest)}: {label}</title></path>"
        )
        lx, ly = 0.25 * sx + 0.5 * qx + 0.25 * ex, 0.25 * sy + 0.5 * qy + 0.25 * ey
        labels.append(f'<text class="edge-label" x="{lx:.1f}" y="{ly:.1f}">{label}</text>')
    for state in states:
        x, y = at[state]
        first = ' class="initial"' if state == initial else ""
        out.append(
            f'<g class="state" data-machine="{escape(name)}" data-state="{escape(state)}">'
            f'<rect{first} x="{x - BOX_W / 2:.1f}" y="{y - BOX_H / 2:.1f}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="8"/><text x="{x:.1f}" y="{y + 4:.1f}">{escape(state)}</text></g>'
        )
    return out + labels  # labels last: drawn over the boxes and arrows


def svg(machines: Sequence[Any] = MACHINES) -> str:
    """The whole diagram: one region per machine, COLUMNS to a row."""
    rows = math.ceil(len(machines) / COLUMNS) or 1
    cols = min(COLUMNS, max(1, len(machines)))
    width, height = cols * REGION_W, rows * REGION_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="machines" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="state machines">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for i, spec in enumerate(machines):
        x, y = (i % COLUMNS) * REGION_W, (i // COLUMNS) * REGION_H
        states = [_name(s) for s in spec.states]
        parts.append(f'<g class="machine" data-machine="{escape(spec.name)}" transform="translate({x},{y})">')
        parts += region(spec.name, states, _name(spec.initial), spec.table)
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
