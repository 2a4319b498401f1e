"""A call's metrics, from the same events as its trace (OpenTelemetry metrics API only).

Instruments (created once per meter; attributes in brackets):

* ``engine.turn.time_to_first_audio``, ``engine.turn.time_to_first_played``,
  ``engine.turn.duration``: histograms, seconds, one value per turn;
* ``engine.interruptions``: barge-ins;
* ``engine.tool.calls`` [``gen_ai.tool.name``, ``engine.tool.outcome``] and
  ``engine.tool.duration`` (seconds, same attributes);
* ``engine.errors`` [``error.type``, ``engine.error.source``];
* ``engine.reconnects`` [``engine.reconnect.kind``: ``reconnect`` or ``rollover``];
* ``engine.sessions`` [``engine.state``]: live sessions by conversation state (up-down);
* ``engine.audio.dropped``: audio-dropped reports (``Error`` ``audio_dropped``);
* ``gen_ai.client.token.usage`` [``gen_ai.token.type``: ``input``, ``output``]: tokens per turn;
* ``engine.cost``: what the turns cost (in the profile's currency).

Every value also carries the session's ``gen_ai.system`` (never a call id:
metrics stay low-cardinality; traces and logs carry the call).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from engine.core import events as ev
from engine.core.states import State

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
TOOL_OUTCOMES = ("ok", "error", "timeout", "cancelled")


def tool_outcome(result: ev.ToolResult) -> str:
    """How a tool call ended, from its result (the tool runner's wording of timeouts and cancels)."""
    if not result.is_error:
        return "ok"
    if "timed out after" in result.output:
        return "timeout"
    if "cancelled" in result.output:
        return "cancelled"
    return "error"


class Adds(Protocol):
    """A counter (or up-down counter) as :class:`CallMeters` uses it."""

    def add(self, amount: float, attributes: Mapping[str, Any]) -> None: ...


class Records(Protocol):
    """A histogram as :class:`CallMeters` uses it."""

    def record(self, amount: float, attributes: Mapping[str, Any]) -> None: ...


class Sink(Protocol):
    """Where :class:`CallMeters` puts values: :class:`Instruments` (OpenTelemetry) or
    :class:`~engine.observe.prometheus.PrometheusInstruments` (the gateway's ``/metrics``)."""

    @property
    def first_audio(self) -> Records: ...
    @property
    def first_played(self) -> Records: ...
    @property
    def turn(self) -> Records: ...
    @property
    def interruptions(self) -> Adds: ...
    @property
    def tool_calls(self) -> Adds: ...
    @property
    def tool_duration(self) -> Records: ...
    @property
    def errors(self) -> Adds: ...
    @property
    def reconnects(self) -> Adds: ...
    @property
    def sessions(self) -> Adds: ...
    @property
    def audio_dropped(self) -> Adds: ...
    @property
    def tokens(self) -> Records: ...
    @property
    def cost(self) -> Adds: ...


class Instruments:
    """The instruments of one meter (shared by every call it measures)."""

    def __init__(self, meter: Meter) -> None:
        def seconds(name: str, description: str) -> Histogram:
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=LATENCY_BUCKETS
            )

        self.first_audio = seconds(
            "engine.turn.time_to_first_audio", "End of the user's turn to the first audio"
        )
        self.first_played = seconds(
            "engine.turn.time_to_first_played", "End of the user's turn to the first audio played"
        )
        self.turn = seconds("engine.turn.duration", "End of the user's turn to the turn's last response.done")
        self.interruptions: Counter = meter.create_counter("engine.interruptions", description="Barge-ins")
        self.tool_calls: Counter = meter.create_counter(
            "engine.tool.calls", description="Tool calls by outcome"
        )
        self.tool_duration = seconds("engine.tool.duration", "Tool call durations")
        self.errors: Counter = meter.create_counter("engine.errors", description="Errors by code")
        self.reconnects: Counter = meter.create_counter(
            "engine.reconnects", description="New sockets by kind"
        )
        self.sessions: UpDownCounter = meter.create_up_down_counter(
            "engine.sessions", description="Live sessions by conversation state"
        )
        self.audio_dropped: Counter = meter.create_counter(
            "engine.audio.dropped", description="Audio-dropped reports"
        )
        self.tokens: Histogram = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per turn by type"
        )
        self.cost: Counter = meter.create_counter("engine.cost", description="What the turns cost")


_instruments: dict[int, tuple[Meter, Instruments]] = {}


def instruments_of(meter: Meter) -> Instruments:
    """The instruments of ``meter``, created on first use."""
    found = _instruments.get(id(meter))
    if found is None or found[0] is not meter:
        found = _instruments[id(meter)] = (meter, Instruments(meter))
    return found[1]


class CallMeters:
    """Feeds one session's events into the shared instruments."""

    def __init__(self, instruments: Sink, attributes: Mapping[str, Any]) -> None:
        self._i = instruments
        self._attrs = dict(attributes)
        self._state: str | None = None
        self._tools: dict[str, int] = {}  # running tool calls: start (ns), by call id
        self._lost = False
        self._attempted = False
        self._enter(State.CONNECTING.value)

    def _enter(self, state: str | None) -> None:
        sessions, attrs = self._i.sessions, self._attrs
        if self._state is not None:
            sessions.add(-1, {**attrs, "engine.state": self._state})
        if state is not None:
            sessions.add(1, {**attrs, "engine.state": state})
        self._state = state

    def handle(self, event: object, now: int) -> None:
        """Take one event seen at ``now`` (wall-clock ns)."""
        i, attrs = self._i, self._attrs
        if isinstance(event, ev.TurnMetrics):
            for histogram, value in (
                (i.first_audio, event.time_to_first_audio),
                (i.first_played, event.time_to_first_played),
                (i.turn, event.total_seconds),
            ):
                if value is not None:
                    histogram.record(value, attrs)
            if event.usage is not None:
                i.tokens.record(event.usage.input_tokens or 0, {**attrs, "gen_ai.token.type": "input"})
                i.tokens.record(event.usage.output_tokens or 0, {**attrs, "gen_ai.token.type": "output"})
            if event.cost is not None:
                i.cost.add(event.cost, attrs)
        elif isinstance(event, ev.StateChanged):
            if self._state is not None:
                self._enter(event.new.value)
            if event.new is State.RECONNECTING:
                self._lost = True
        elif isinstance(event, ev.Interrupted):
            i.interruptions.add(1, attrs)
        elif isinstance(event, ev.ToolCall):
            self._tools[event.call_id] = now
        elif isinstance(event, ev.ToolResult):
            began = self._tools.pop(event.call_id, None)
            tool = {**attrs, "gen_ai.tool.name": event.name, "engine.tool.outcome": tool_outcome(event)}
            i.tool_calls.add(1, tool)
            if began is not None:
                i.tool_duration.record((now - began) / 1e9, tool)
        elif isinstance(event, ev.Error):
            i.errors.add(1, {**attrs, "error.type": event.code, "engine.error.source": event.source})
            if event.code == "audio_dropped":
                i.audio_dropped.add(1, attrs)
        elif isinstance(event, ev.Reconnecting):
            self._attempted = not getattr(event, "planned", False)
        elif isinstance(event, ev.Reconnected):
            kind = "reconnect" if self._attempted else "rollover"
            i.reconnects.add(1, {**attrs, "engine.reconnect.kind": kind})
            self._attempted = self._lost = False
        elif isinstance(event, ev.Closed):
            self._enter(None)  # no longer live
