"""A :class:`~engine.timeline.model.Call` drawn as SVG: one time axis, one swimlane per lane.

Every span is a ``<g class="span KIND">`` holding a ``<rect>`` and carrying its
times (``data-start``, ``data-end``, seconds since the call began), a short
label and the hover details (``data-detail``, also a ``<title>``); every mark is
a ``<g class="mark KIND">`` with ``data-t``. Overlapping spans of one lane take
extra rows. All text is escaped, and characters XML cannot carry are dropped, so
the SVG is well-formed XML whatever the server or the user said.
"""

from __future__ import annotations

import html
import math
import re

from engine.timeline.model import Call, Lane, state_order
from engine.timeline.shapes import Mark, Span

LABEL_WIDTH = 170
ROW = 22
BAR = 16
PAD = 6
AXIS = 30
RIGHT = 24
CHAR = 6.4  # average width of a label character at the labels' font size
_LABELS_OUTSIDE = ("tools", "user")
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def esc(text: object) -> str:
    """Text for an element or a quoted attribute: escaped, and only characters XML allows."""
    return html.escape(_UNSAFE.sub("\ufffd", str(text)), quote=True)


def scale_of(duration: float) -> float:
    """Pixels per second: the whole call in about 1100 px, within readable limits."""
    return min(max(1100 / max(duration, 0.001), 12.0), 400.0)


def _tick_step(px_per_s: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if step * px_per_s >= 70:
            return float(step)
    return 7200.0


def _rows(spans: tuple[Span, ...]) -> list[int]:
    """The row of each span: the first row whose last span ended by the time this one starts."""
    ends: list[float] = []
    rows = []
    for span in spans:
        for row, end in enumerate(ends):
            if end <= span.start + 1e-9:
                ends[row] = span.end
                rows.append(row)
                break
        else:
            ends.append(span.end)
            rows.append(len(ends) - 1)
    return rows


def _fit(label: str, width: float) -> str:
    room = int((width - 6) / CHAR)
    if room >= len(label):
        return label
    return label[: room - 1] + "…" if room >= 4 else ""


class _Drawing:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.px = scale_of(call.extent)
        self.width = LABEL_WIDTH + math.ceil(call.extent * self.px) + RIGHT
        self.parts: list[str] = []

    def x(self, t: float) -> float:
        return LABEL_WIDTH + max(t, 0.0) * self.px

    def lane(self, lane: Lane, top: float) -> float:
        spans = tuple(sorted(lane.spans, key=lambda s: (s.start, s.end)))
        rows = _rows(spans)
        height = PAD * 2 + ROW * max(1, max(rows, default=0) + 1)
        name = esc(lane.name)
        self.parts.append(f'<g class="lane" data-lane="{name}" data-title="{esc(lane.title)}">')
        self.parts.append(
            f'<rect class="lane-bg" x="0" y="{top:.1f}" width="{self.width}" height="{height}"/>'
        )
        self.parts.append(
            f'<text class="lane-title" x="8" y="{top + height / 2 + 4:.1f}">{esc(lane.title)}</text>'
        )
        palette = self.palette(lane)
        outside = lane.name in _LABELS_OUTSIDE
        for span, row in zip(spans, rows, strict=True):
            self.span(span, top + PAD + row * ROW + (ROW - BAR) / 2, palette, outside)
        for mark in sorted(lane.marks, key=lambda m: m.t):
            self.mark(mark, top, height, lane.name in ("errors", "connection", "user"))
        self.parts.append("</g>")
        return height

    def palette(self, lane: Lane) -> dict[str, int]:
        """For a machine's lane, each state's colour index (the table's order, then first seen)."""
        if not lane.name.startswith("machine:"):
            return {}
        order = state_order(lane.name.removeprefix("machine:"))
        for span in lane.spans:
            if span.label not in order:
                order.append(span.label)
        return {state: index % 8 for index, state in enumerate(order)}

    def span(self, span: Span, y: float, palette: dict[str, int], outside: bool) -> None:
        left, right = self.x(span.start), self.x(span.end)
        width = max(right - left, 1.5)
        colour = f" c{palette[span.label]}" if span.label in palette else ""
        detail = span.detail or span.label
        self.parts.append(
            f'<g class="span {esc(span.kind)}{colour}"'
            f' data-start="{span.start:.6f}" data-end="{span.end:.6f}"'
            f' data-label="{esc(span.label)}" data-detail="{esc(detail)}">'
            f"<title>{esc(detail)}</title>"
            f'<rect x="{left:.2f}" y="{y:.1f}" width="{width:.2f}" height="{BAR}" rx="3"/>'
        )
        text = _fit(span.label, width)
        if text:
            self.parts.append(f'<text x="{left + 3:.2f}" y="{y + BAR - 4:.1f}">{esc(text)}</text>')
        elif outside:  # a short span (a quick tool call): its name beside it
            self.parts.append(
                f'<text x="{left + width + 3:.2f}" y="{y + BAR - 4:.1f}">{esc(span.label)}</text>'
            )
        self.parts.append("</g>")

    def mark(self, mark: Mark, top: float, height: float, labelled: bool) -> None:
        at = self.x(mark.t)
        detail = mark.detail or mark.label
        self.parts.append(
            f'<g class="mark {esc(mark.kind)}" data-t="{mark.t:.6f}" data-label="{esc(mark.label)}"'
            f' data-detail="{esc(detail)}"><title>{esc(detail)}</title>'
            f'<line x1="{at:.2f}" y1="{top + 2:.1f}" x2="{at:.2f}" y2="{top + height - 2:.1f}"/>'
            f'<path d="M{at - 5:.2f},{top + 2:.1f} h10 l-5,8 z"/>'
        )
        if labelled:
            self.parts.append(f'<text x="{at + 6:.2f}" y="{top + 14:.1f}">{esc(mark.label)}</text>')
        self.parts.append("</g>")

    def axis(self, height: float) -> None:
        step = _tick_step(self.px)
        self.parts.append('<g class="axis">')
        for n in range(int(self.call.extent / step) + 1):
            t = n * step
            at = self.x(t)
            label = f"{t:g} s" if step < 60 else f"{t / 60:g} min"
            self.parts.append(
                f'<line class="grid" x1="{at:.2f}" y1="{AXIS - 6}" x2="{at:.2f}" y2="{height:.1f}"/>'
                f'<text x="{at:.2f}" y="{AXIS - 10}">{esc(label)}</text>'
            )
        self.parts.append("</g>")


def draw(call: Call) -> str:
    """The SVG element of ``call``."""
    drawing = _Drawing(call)
    body = drawing.parts
    top = float(AXIS)
    lanes_at = len(body)
    for lane in call.lanes:
        top += drawing.lane(lane, top) + 2
    lanes = body[lanes_at:]
    del body[lanes_at:]
    drawing.axis(top)
    height = math.ceil(top)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{drawing.width}" height="{height}"'
        f' viewBox="0 0 {drawing.width} {height}" data-px-per-s="{drawing.px:.6f}"'
        f' data-origin="{LABEL_WIDTH}" data-duration="{call.duration:.4f}" role="img"'
        f' aria-label="call timeline">' + "".join(body) + "".join(lanes) + "</svg>"
    )
