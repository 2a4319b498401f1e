"""One call's trace, generated from the session's events (OpenTelemetry API only).

The tree (every span a child of ``call`` unless said otherwise):

* ``call``: the whole session; GenAI attributes (``gen_ai.system``,
  ``gen_ai.request.model``, ``gen_ai.usage.*``), the call's cost; events for
  interruptions and errors (a fatal error sets the status);
* ``<machine> <state>`` (``conversation responding``, ``response generating``...):
  each interval each machine of the core spends in a state, end to end, so each
  machine's state spans tile the call with no gap and no overlap (the
  conversation's from ``StateChanged``, the others' from the core's ``on_step``);
* ``turn``: each turn, from the end of the user's input to its last
  ``response.done``, with its ``TurnMetrics`` (first audio, first *played*
  audio, tools, total, usage, cost) and its interruption event; its tool calls
  are its children ``execute_tool <name>`` (argument and result sizes, outcome:
  ``ok``, ``error``, ``timeout`` or ``cancelled``);
* ``reconnect`` (a dropped socket) and ``rollover`` (a planned new socket).

Nothing secret is put on a span: no key, no URL, and the words (transcripts,
tool arguments and results) only when the application opts in (``capture_text``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from engine.core import events as ev
from engine.core.states import State
from engine.observe.meters import tool_outcome


class CallTrace:
    """Turns one session's events into its spans (see the module docstring)."""

    def __init__(
        self,
        tracer: Tracer,
        attributes: Mapping[str, Any],
        *,
        capture_text: bool,
        clock: Callable[[], float] | None,
    ) -> None:
        self._tracer = tracer
        self._text = capture_text
        self._clock = clock  # the session's loop clock, for TurnMetrics timestamps
        self._offset: int | None = None  # wall-clock ns minus loop-clock ns
        now = time.time_ns()
        self.call: Span = tracer.start_span("call", attributes=dict(attributes), start_time=now)
        self._context = trace.set_span_in_context(self.call)
        self._state: Span = self._start_state(State.CONNECTING, now)
        self._start = now
        self._machines: dict[str, Span] = {}  # the other core machines' current state spans
        self._tools: dict[str, tuple[str, int, ev.ToolCall]] = {}  # running, by call id
        self._done_tools: list[tuple[ev.ToolCall, ev.ToolResult, int, int]] = []  # since the last turn
        self._cuts: list[tuple[ev.Interrupted, int]] = []  # interruptions since the last turn
        self._lost: tuple[int, int, bool] | None = None  # the socket is down: since, attempts, planned
        self._input_tokens = self._output_tokens = 0
        self._cost: float | None = None
        self.ended = False

    # ------------------------------------------------------------------ events

    def handle(self, event: object, now: int) -> None:
        """Take one event seen at ``now`` (wall-clock ns)."""
        if self.ended:
            return
        if self._offset is None and self._clock is not None:
            try:
                self._offset = now - round(self._clock() * 1e9)
            except RuntimeError:  # not in the loop's thread: turn spans then start at their events
                self._clock = None
        if isinstance(event, ev.StateChanged):
            self._state.end(end_time=now)
            self._state = self._start_state(event.new, now)
            if event.new is State.RECONNECTING and self._lost is None:
                self._lost = (now, 0, False)
        elif isinstance(event, ev.TurnMetrics):
            self._turn(event, now)
        elif isinstance(event, ev.ToolCall):
            self._tools[event.call_id] = (event.name, now, event)
        elif isinstance(event, ev.ToolResult):
            started = self._tools.pop(event.call_id, None)
            if started is not None:
                self._done_tools.append((started[2], event, started[1], now))
        elif isinstance(event, ev.Interrupted):
            attrs = _cut_attributes(event)
            self.call.add_event("interruption", attrs, timestamp=now)
            self._cuts.append((event, now))
        elif isinstance(event, ev.Error):
            self._error(event, now)
        elif isinstance(event, ev.Reconnecting):
            since = self._lost[0] if self._lost is not None else now
            planned = bool(getattr(event, "planned", False))
            self._lost = (since, 0 if planned else event.attempt, planned)
        elif isinstance(event, ev.Reconnected):
            self._reconnected(now)
        elif isinstance(event, ev.UserTranscript | ev.AssistantTranscript):
            if self._text and event.final:
                who = "user" if isinstance(event, ev.UserTranscript) else "assistant"
                self.call.add_event(
                    f"{who}_transcript",
                    {"gen_ai.item.id": event.item_id or "", "engine.text": event.text},
                    timestamp=now,
                )
        elif isinstance(event, ev.Closed):
            self._close(event, now)

    # ------------------------------------------------------------------ spans

    def _start_state(self, state: State, now: int) -> Span:
        return self._machine_span("conversation", state.value, now)

    def _machine_span(self, machine: str, state: str, now: int) -> Span:
        return self._tracer.start_span(
            f"{machine} {state}",
            context=self._context,
            attributes={"engine.machine": machine, "engine.state": state},
            start_time=now,
        )

    def machines(self, states: dict[str, str]) -> None:
        """Start tracing the core's other machines, in ``states`` since the call began."""
        for machine, state in states.items():
            if machine != "conversation" and machine not in self._machines:
                self._machines[machine] = self._machine_span(machine, state, self._start)

    def step(self, machine: str, new: str, now: int) -> None:
        """A core machine other than the conversation moved to ``new`` at ``now``."""
        span = self._machines.get(machine)
        if self.ended or span is None:
            return
        span.end(end_time=now)
        self._machines[machine] = self._machine_span(machine, new, now)

    def _wall(self, t: float | None) -> int | None:
        return None if t is None or self._offset is None else self._offset + round(t * 1e9)

    def _turn(self, m: ev.TurnMetrics, now: int) -> None:
        start = self._wall(m.turn_start) or self._wall(m.response_created) or now
        end = self._wall(m.response_done) or now
        attributes: dict[str, Any] = {"engine.turn": m.turn}
        if m.response_id is not None:
            attributes["gen_ai.response.id"] = m.response_id
        for key, value in (
            ("engine.turn.time_to_first_audio", m.time_to_first_audio),
            ("engine.turn.time_to_first_played", m.time_to_first_played),
            ("engine.turn.total", m.total_seconds),
            ("engine.turn.tool_seconds", m.tool_seconds),
            ("engine.turn.reconnect_seconds", m.reconnect_seconds),
            ("engine.cost", m.cost),
        ):
            if value is not None:
                attributes[key] = value
        if m.usage is not None:
            inputs, outputs = m.usage.input_tokens or 0, m.usage.output_tokens or 0
            attributes["gen_ai.usage.input_tokens"] = inputs
            attributes["gen_ai.usage.output_tokens"] = outputs
            self._input_tokens += inputs
            self._output_tokens += outputs
        if m.cost is not None:
            self._cost = (self._cost or 0.0) + m.cost
        span = self._tracer.start_span("turn", context=self._context, attributes=attributes, start_time=start)
        for cut, at in self._cuts:
            span.add_event("interruption", _cut_attributes(cut), timestamp=at)
        self._cuts = []
        context = trace.set_span_in_context(span)
        for call, result, began, ended in self._done_tools:
            self._tool(call, result, began, ended, context)
        self._done_tools = []
        span.end(end_time=max(end, start))

    def _tool(
        self, call: ev.ToolCall, result: ev.ToolResult | None, began: int, ended: int, context: Any
    ) -> None:
        """The span of one tool call (``result`` ``None``: still running when the call closed)."""
        outcome = tool_outcome(result) if result is not None else "cancelled"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.call_id,
            "engine.tool.arguments_bytes": len(call.arguments.encode()),
            "engine.tool.outcome": outcome,
        }
        if result is not None:
            attributes["engine.tool.result_bytes"] = len(result.output.encode())
        if self._text:
            attributes["gen_ai.tool.call.arguments"] = call.arguments
            if result is not None:
                attributes["gen_ai.tool.call.result"] = result.output
        span = self._tracer.start_span(
            f"execute_tool {call.name}", context=context, attributes=attributes, start_time=began
        )
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(end_time=ended)

    def _reconnected(self, now: int, outcome: str = "reconnected") -> None:
        """The span of the socket's downtime, ``reconnect`` (a drop) or ``rollover`` (planned)."""
        since, attempts, planned = self._lost if self._lost is not None else (now, 0, False)
        self._lost = None
        attributes: dict[str, Any] = {
            "engine.reconnect.attempts": attempts,
            "engine.reconnect.outcome": outcome,
        }
        name = "rollover" if planned else "reconnect"
        self._tracer.start_span(name, context=self._context, attributes=attributes, start_time=since).end(now)

    def _error(self, error: ev.Error, now: int) -> None:
        attributes: dict[str, Any] = {
            "error.type": error.code,
            "engine.error.source": error.source,
            "engine.error.fatal": error.fatal,
        }
        if self._text:
            attributes["engine.error.message"] = error.message
        self.call.add_event("error", attributes, timestamp=now)
        if error.fatal:
            self.call.set_status(Status(StatusCode.ERROR, error.code))
            self.call.set_attribute("error.type", error.code)

    def _close(self, closed: ev.Closed, now: int) -> None:
        self.ended = True
        for _, began, call in self._tools.values():  # still running: cut off by the close
            self._tool(call, None, began, now, self._context)
        for call, result, began, ended in self._done_tools:  # answered, but no turn closed after
            self._tool(call, result, began, ended, self._context)
        if self._lost is not None:  # the session ended while the socket was down
            self._reconnected(now, "closed")
        self._state.end(end_time=now)
        for span in self._machines.values():
            span.end(end_time=now)
        root = self.call
        root.set_attribute("engine.close_reason", closed.reason)
        root.set_attribute("gen_ai.usage.input_tokens", self._input_tokens)
        root.set_attribute("gen_ai.usage.output_tokens", self._output_tokens)
        if self._cost is not None:
            root.set_attribute("engine.cost", self._cost)
        root.end(end_time=now)


def _cut_attributes(cut: ev.Interrupted) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.item.id": cut.item_id or ""}
    if cut.played_ms is not None:
        attributes["engine.played_ms"] = cut.played_ms
    return attributes
