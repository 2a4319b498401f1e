"""A recording read into lanes of spans and marks on one time axis (seconds since the call began).

The recording is fed to a fresh core through :func:`engine.record.steps`, so
everything the core derived during the call (state changes, barge-in cuts, tool
calls, per-turn metrics, errors) comes back exactly as it happened, on the
recorded clock. Nothing here draws; :mod:`engine.timeline.svg` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from engine.core import effects as fx
from engine.core import events as ev
from engine.core.states import MACHINES
from engine.record import Step, steps
from engine.timeline.audio import AssistantAudio
from engine.timeline.shapes import Mark, Span


@attrs.frozen(kw_only=True)
class Lane:
    """One swimlane: ``name`` is its id (``machine:conversation``, ``user``, ...)."""

    name: str
    title: str
    spans: tuple[Span, ...] = ()
    marks: tuple[Mark, ...] = ()


@attrs.frozen(kw_only=True)
class Turn:
    """One turn's latency figures, its times relative to the start of the call."""

    metrics: ev.TurnMetrics
    start: float | None
    end: float | None


@attrs.frozen(kw_only=True)
class Call:
    """Everything the timeline shows about one recorded call."""

    duration: float
    provider: str
    model: str
    lanes: tuple[Lane, ...]
    turns: tuple[Turn, ...]
    errors: tuple[Mark, ...]

    @property
    def extent(self) -> float:
        """Where the time axis ends: the call, or later if audio cut near the end would have played on."""
        ends = [s.end for lane in self.lanes for s in lane.spans] + [
            m.t for lane in self.lanes for m in lane.marks
        ]
        return max([self.duration, *ends])

    def lane(self, name: str) -> Lane:
        """The lane called ``name`` (KeyError when the call has none)."""
        for lane in self.lanes:
            if lane.name == name:
                return lane
        raise KeyError(name)


def state_order(machine: str) -> list[str]:
    """A machine's states in its table's order (empty for a machine the core does not know)."""
    for spec in MACHINES:
        if spec.name == machine:
            return [s.value for s in spec.states]
    return []


def _text(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Reader:
    """Walks the steps once, collecting spans and marks per lane."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.now = 0.0
        self.states: dict[str, tuple[str, float]] = {}  # machine -> (state, since)
        self.state_spans: dict[str, list[Span]] = {}
        self.user: list[Span] = []
        self.user_marks: list[Mark] = []
        self.speech: tuple[float, str | None] | None = None
        self.spoken: dict[str, int] = {}  # item id -> index of its span in self.user
        self.heard_words: dict[str | None, str] = {}
        self.tools: dict[str, tuple[float, ev.ToolCall]] = {}
        self.tool_spans: list[Span] = []
        self.connection: list[Span] = []
        self.connection_marks: list[Mark] = []
        self.up: float | None = None
        self.down: float | None = None
        self.errors: list[Mark] = []
        self.turns: list[Turn] = []
        self.audio: AssistantAudio | None = None

    def rel(self, t: float | None) -> float | None:
        return None if t is None else t - self.start

    def step(self, step: Step) -> None:
        self.now = step.t - self.start
        record = step.record
        kind = record.get("kind")
        if kind == "state" and isinstance(record.get("machine"), str):
            self.enter(record["machine"], str(record.get("new")))  # a machine the core does not run
        elif kind == "unrecordable":
            what = record.get("type") or record.get("of")
            self.errors.append(Mark(t=self.now, kind="warning", label="unrecordable", detail=_text(what)))
        if step.command is not None:
            self.command(*step.command)
        for effect in step.effects:
            if isinstance(effect, fx.Emit):
                self.event(effect.event)
            elif isinstance(effect, fx.Send) and self.audio is not None:
                self.audio.client_event(self.now, effect.event)
        if kind == "server" and self.audio is not None:
            self.audio.server_event(self.now, record.get("event") or {}, record.get("audio_bytes"))
        for machine, state in step.states.items():
            self.enter(machine, state)

    def enter(self, machine: str, state: str) -> None:
        current = self.states.get(machine)
        if current is not None and current[0] == state:
            return
        if current is not None:
            self.state_spans.setdefault(machine, []).append(
                Span(start=current[1], end=self.now, kind=f"state {current[0]}", label=current[0])
            )
        self.states[machine] = (state, self.now)

    def command(self, name: str, args: dict[str, Any]) -> None:
        if name == "send_text":
            text = _text(args.get("text", ""))
            label = f"“{_text(text, 24)}”"
            self.user_marks.append(Mark(t=self.now, kind="typed", label=label, detail=f"typed: {text}"))
        elif name == "audio_played" and self.audio is not None:
            self.audio.played(self.now, args.get("item_id"), args.get("ms"))
        elif name == "connection_opened":
            if self.down is not None:
                self.connection.append(Span(start=self.down, end=self.now, kind="down", label="down"))
                self.connection_marks.append(Mark(t=self.now, kind="reconnect", label="reconnected"))
                self.down = None
            self.up = self.now if self.up is None else self.up
        elif name in ("connection_lost", "close"):
            if self.up is not None:
                self.connection.append(Span(start=self.up, end=self.now, kind="up", label="connected"))
                self.up = None
            if name == "connection_lost":
                self.down = self.now
                self.connection_marks.append(Mark(t=self.now, kind="lost", label="connection lost"))
        elif name == "interrupt":
            self.user_marks.append(Mark(t=self.now, kind="interrupt", label="interrupt()"))

    def event(self, event: Any) -> None:
        if isinstance(event, ev.SpeechStarted):
            if self.speech is None:
                self.speech = (self.now, event.item_id)
        elif isinstance(event, ev.SpeechStopped):
            self.close_speech()
        elif isinstance(event, ev.UserTranscript) and event.final:
            self.heard_words[event.item_id] = event.text
            index = self.spoken.get(event.item_id or "")
            if index is not None:
                span = self.user[index]
                words = _text(event.text)
                self.user[index] = attrs.evolve(span, label=f"“{words}”", detail=f"{span.detail}\n“{words}”")
        elif isinstance(event, ev.ToolCall):
            self.tools[event.call_id] = (self.now, event)
        elif isinstance(event, ev.ToolResult):
            self.answer(event)
        elif isinstance(event, ev.Error):
            where = "fatal " if event.fatal else ""
            self.errors.append(
                Mark(
                    t=self.now,
                    kind="error fatal" if event.fatal else "error",
                    label=event.code,
                    detail=f"{where}{event.source} error {event.code}: {_text(event.message)}",
                )
            )
        elif isinstance(event, ev.TurnMetrics):
            self.turns.append(
                Turn(metrics=event, start=self.rel(event.turn_start), end=self.rel(event.response_done))
            )
        elif self.audio is not None:
            self.audio.event(self.now, event)

    def close_speech(self) -> None:
        if self.speech is None:
            return
        began, item_id = self.speech
        self.speech = None
        words = self.heard_words.get(item_id)
        detail = f"the user spoke for {(self.now - began) * 1000:.0f} ms" + (f"\n“{words}”" if words else "")
        label = f"“{_text(words)}”" if words else "speech"
        if item_id is not None:
            self.spoken[item_id] = len(self.user)
        self.user.append(Span(start=began, end=self.now, kind="speech", label=label, detail=detail))

    def answer(self, result: ev.ToolResult) -> None:
        began, call = self.tools.pop(result.call_id, (self.now, None))
        arguments = call.arguments if call is not None else "?"
        kind = "tool failed" if result.is_error else "tool"
        detail = f"{result.name}({_text(arguments, 200)})\n→ {_text(result.output)}"
        detail += f"\n{(self.now - began) * 1000:.0f} ms"
        self.tool_spans.append(Span(start=began, end=self.now, kind=kind, label=result.name, detail=detail))

    def finish(self) -> None:
        self.close_speech()
        for machine, (state, since) in self.states.items():
            if self.now > since:
                self.state_spans.setdefault(machine, []).append(
                    Span(start=since, end=self.now, kind=f"state {state}", label=state)
                )
        for began, call in self.tools.values():
            detail = f"{call.name}({_text(call.arguments, 200)})\nnever answered"
            self.tool_spans.append(
                Span(start=began, end=self.now, kind="tool unanswered", label=call.name, detail=detail)
            )
        if self.up is not None:
            self.connection.append(Span(start=self.up, end=self.now, kind="up", label="connected"))
        if self.down is not None:
            self.connection.append(Span(start=self.down, end=self.now, kind="down", label="down"))


def read_call(records: Iterable[dict[str, Any]]) -> Call:
    """The timeline of a recording (its records in order, the meta record first)."""
    records = iter(records)
    meta = next(records, None)
    if meta is None or meta.get("kind") != "meta":
        raise ValueError("a recording starts with a meta record")
    reader = _Reader(float(meta.get("t", 0.0)))
    reader.audio = AssistantAudio.for_config(meta.get("config") or {})
    for step in steps(_chain(meta, records)):
        reader.step(step)
    reader.finish()
    lanes = [
        Lane(name=f"machine:{machine}", title=machine, spans=tuple(spans))
        for machine, spans in _machines_in_order(reader.state_spans)
    ]
    audio_spans = reader.audio.spans(reader.now)
    lanes += [
        Lane(name="user", title="user speech", spans=tuple(reader.user), marks=tuple(reader.user_marks)),
        Lane(
            name="assistant",
            title="assistant audio",
            spans=tuple(audio_spans),
            marks=tuple(reader.audio.marks()),
        ),
        Lane(name="tools", title="tool calls", spans=tuple(reader.tool_spans)),
        Lane(
            name="connection",
            title="connection",
            spans=tuple(reader.connection),
            marks=tuple(reader.connection_marks),
        ),
        Lane(name="errors", title="errors", marks=tuple(reader.errors)),
        Lane(
            name="turns",
            title="turns (latency)",
            spans=tuple(_turn_spans(reader.turns)),
            marks=tuple(_turn_marks(reader.turns, reader.start)),
        ),
    ]
    config = meta.get("config") or {}
    return Call(
        duration=reader.now,
        provider=_text(meta.get("provider", ""), 40),
        model=_text(config.get("model", ""), 80),
        lanes=tuple(lanes),
        turns=tuple(reader.turns),
        errors=tuple(reader.errors),
    )


def _chain(meta: dict[str, Any], rest: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    yield meta
    yield from rest


def _machines_in_order(spans: dict[str, list[Span]]) -> list[tuple[str, list[Span]]]:
    known = [spec.name for spec in MACHINES]
    order = sorted(spans, key=lambda m: (known.index(m) if m in known else len(known), m))
    return [(m, sorted(spans[m], key=lambda s: s.start)) for m in order]


def ms(seconds: float | None) -> str:
    """Seconds as a short millisecond figure, ``-`` when unknown."""
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def latency(m: ev.TurnMetrics) -> str:
    """One turn's figures in words."""
    parts = [f"first audio {ms(m.time_to_first_audio)}", f"first played {ms(m.time_to_first_played)}"]
    if m.tool_seconds is not None:
        parts.append(f"tools {ms(m.tool_seconds)}")
    if m.reconnect_seconds is not None:
        parts.append(f"reconnect {ms(m.reconnect_seconds)}")
    parts.append(f"total {ms(m.total_seconds)}")
    return ", ".join(parts)


def _turn_spans(turns: list[Turn]) -> list[Span]:
    out = []
    for turn in turns:
        if turn.start is None or turn.end is None:
            continue
        m = turn.metrics
        out.append(
            Span(
                start=turn.start,
                end=turn.end,
                kind="turn",
                label=f"turn {m.turn}: {ms(m.time_to_first_audio)} to first audio",
                detail=f"turn {m.turn}: {latency(m)}",
            )
        )
    return out


_MILESTONES = (
    ("response_created", "created", "response.created"),
    ("first_audio_received", "first-audio", "first audio received"),
    ("first_audio_played", "first-played", "first audio played"),
)


def _turn_marks(turns: list[Turn], start: float) -> list[Mark]:
    """Each turn's milestones: the response created, its first audio received and first played."""
    out = []
    for turn in turns:
        began = turn.metrics.turn_start
        for field, kind, words in _MILESTONES:
            at = getattr(turn.metrics, field)
            if at is None:
                continue
            since = f" ({ms(at - began)} into the turn)" if began is not None else ""
            detail = f"turn {turn.metrics.turn}: {words}{since}"
            out.append(Mark(t=at - start, kind=f"milestone {kind}", label=words, detail=detail))
    return out
