"""The timeline page: one self-contained HTML file (inline SVG, CSS and a few lines of script).

No external asset of any kind, so it opens offline and can be mailed with a bug
report. The script only shows a span's details on hover or click; every piece
of text in the page went through :func:`~engine.timeline.svg.esc`, and the
script reads it back from attributes with ``textContent``, never as HTML.
"""

from __future__ import annotations

from engine.timeline.model import Call, latency, ms
from engine.timeline.svg import draw, esc

# State colours by index in a machine's table (c0 is its first state).
_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 20px; color: #1d232b; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 18px 0 6px; }
.summary { color: #4a5563; margin: 0 0 10px; }
.scroll { width: max-content; max-width: 100%; overflow-x: auto; }
.scroll { border: 1px solid #d5dae1; background: white; }
#details { min-height: 2.8em; white-space: pre-wrap; margin: 8px 0; padding: 6px 10px;
  border-left: 3px solid #7c8da6; background: #eef1f5; font-size: 13px; }
svg text { font: 11px system-ui, sans-serif; fill: #1d232b; pointer-events: none; }
.lane-bg { fill: #ffffff; } .lane:nth-of-type(even) .lane-bg { fill: #f4f6f9; }
.lane-title { font-weight: 600; font-size: 12px; fill: #333d4b; }
.axis text { fill: #5f6b7a; text-anchor: middle; } .axis .grid { stroke: #dde2e8; stroke-width: 1; }
.span rect { stroke: rgba(0,0,0,.25); stroke-width: .6; }
.span:hover rect, .span.pinned rect { stroke: #000; stroke-width: 1.6; }
.span { cursor: pointer; } .mark { cursor: pointer; }
.c0 rect { fill: #cfd6df; } .c1 rect { fill: #a8dbb3; } .c2 rect { fill: #8cc3f2; }
.c3 rect { fill: #f6c27a; } .c4 rect { fill: #c9a8ee; } .c5 rect { fill: #f29c9c; }
.c6 rect { fill: #8b96a5; } .c7 rect { fill: #e7e08a; }
.speech rect { fill: #6aa7e8; } .heard rect { fill: #4caf6e; }
.cut rect { fill: #f1b3b3; stroke: #c0392b; stroke-dasharray: 3 2; } .received rect { fill: #b9c4cf; }
.tool rect { fill: #b58be0; } .tool.failed rect, .tool.unanswered rect { fill: #e58a8a; }
.up rect { fill: #d8ecdc; } .down rect { fill: #e74c3c; } .turn rect { fill: #fde9b8; }
.mark line { stroke: #56606d; stroke-width: 1; stroke-dasharray: 2 2; } .mark path { fill: #56606d; }
.mark.error path, .mark.error line { fill: #d62c1a; stroke: #d62c1a; } .mark.fatal path { fill: #7b0d02; }
.mark.warning path { fill: #d68a1a; }
.mark.barge-in path { fill: #c0392b; } .mark.barge-in line { stroke: #c0392b; }
.mark.typed path { fill: #2f6fb5; } .mark.lost path { fill: #d62c1a; } .mark.reconnect path { fill: #2e8b57; }
.mark.milestone line { stroke-dasharray: none; } .mark.first-played path { fill: #2e8b57; }
.mark.first-audio path { fill: #2f6fb5; } .mark.created path { fill: #8b96a5; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; color: #333d4b; }
.legend svg { vertical-align: middle; margin-right: 4px; }
table { border-collapse: collapse; font-size: 13px; background: white; }
th, td { border: 1px solid #d5dae1; padding: 3px 8px; text-align: right; } th { background: #eef1f5; }
td:first-child, th:first-child { text-align: left; }
.errors li.fatal { color: #7b0d02; font-weight: 600; }
"""

_SCRIPT = """
(function () {
  var details = document.getElementById("details");
  var pinned = null;
  function show(el) { details.textContent = el.getAttribute("data-detail"); }
  document.querySelectorAll("#timeline [data-detail]").forEach(function (el) {
    el.addEventListener("mouseenter", function () { if (!pinned) show(el); });
    el.addEventListener("click", function () {
      if (pinned) pinned.classList.remove("pinned");
      pinned = pinned === el ? null : el;
      if (pinned) { pinned.classList.add("pinned"); show(el); }
    });
  });
})();
"""

_LEGEND = (
    ("speech", "user speech (VAD)"),
    ("heard", "assistant audio heard"),
    ("cut", "assistant audio cut by a barge-in"),
    ("received", "audio received, playback not acknowledged"),
    ("tool", "tool call, start to answer"),
    ("down", "connection down"),
    ("turn", "turn, end of user input to response done"),
)
_MARKS = (
    ("typed", "the user typed"),
    ("barge-in", "barge-in"),
    ("milestone first-audio", "first audio received"),
    ("milestone first-played", "first audio played"),
    ("error", "error"),
)


def _legend() -> str:
    swatch = (
        '<svg width="18" height="12"><g class="span {0}">'
        '<rect x="1" y="1" width="16" height="10" rx="2"/></g></svg>'
    )
    items = "".join(f"<span>{swatch.format(kind)}{esc(words)}</span>" for kind, words in _LEGEND)
    mark = '<svg width="12" height="10"><g class="mark {0}"><path d="M1,1 h10 l-5,8 z"/></g></svg>'
    items += "".join(f"<span>{mark.format(kind)}{esc(words)}</span>" for kind, words in _MARKS)
    return f'<div class="legend" id="legend">{items}</div>'


def _summary(call: Call, title: str) -> str:
    assistant = call.lane("assistant")
    cuts = sum(1 for s in assistant.spans if s.kind == "cut")
    tools = len(call.lane("tools").spans)
    drops = sum(1 for m in call.lane("connection").marks if m.kind == "lost")
    parts = [
        title,
        call.provider,
        call.model,
        f"{call.duration:.1f} s",
        _count(len(call.turns), "turn"),
        _count(tools, "tool call"),
        _count(cuts, "barge-in"),
        _count(drops, "reconnect"),
        _count(len(call.errors), "error"),
    ]
    return " · ".join(esc(p) for p in parts if p)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _turns(call: Call) -> str:
    if not call.turns:
        return "<p>No turn finished.</p>"
    head = (
        "<tr><th>turn</th><th>starts at</th><th>first audio</th><th>first played</th>"
        "<th>tools</th><th>reconnect</th><th>total</th><th>tokens</th></tr>"
    )
    rows = []
    for turn in call.turns:
        m = turn.metrics
        tokens = m.usage.total_tokens if m.usage is not None and m.usage.total_tokens is not None else "-"
        start = "-" if turn.start is None else f"{turn.start:.2f} s"
        cells = (
            f"turn {m.turn}",
            start,
            ms(m.time_to_first_audio),
            ms(m.time_to_first_played),
            ms(m.tool_seconds),
            ms(m.reconnect_seconds),
            ms(m.total_seconds),
            str(tokens),
        )
        rows.append(
            f'<tr title="{esc(latency(m))}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
        )
    return f'<table id="turn-table">{head}{"".join(rows)}</table>'


def _errors(call: Call) -> str:
    if not call.errors:
        return '<p id="error-list">None.</p>'
    items = "".join(
        f'<li class="{esc(e.kind)}">{e.t:.2f} s: {esc(e.detail or e.label)}</li>' for e in call.errors
    )
    return f'<ul class="errors" id="error-list">{items}</ul>'


def page(call: Call, *, title: str = "call") -> str:
    """The whole HTML document of ``call``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Call timeline: {esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>Call timeline</h1><p class="summary" id="summary">{_summary(call, title)}</p></header>'
        f'<main><div class="scroll" id="chart">{draw(call)}</div>'
        '<div id="details">Point at anything in the timeline to see its details; click to pin.</div>'
        f"{_legend()}<h2>Turns</h2>{_turns(call)}<h2>Errors</h2>{_errors(call)}</main>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
