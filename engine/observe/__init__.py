"""Observability: OpenTelemetry traces and metrics of each call, per-call logs, usage and cost.

One call attaches it (before ``session.connect()``)::

    observer = engine.observe.instrument(session)          # the global providers
    async with session.connect():
        ...
    observer.usage().cost

Traces and metrics use only the OpenTelemetry API (``pip install engine[otel]``):
with no SDK configured they cost next to nothing. The spans and instruments are
described in :mod:`engine.observe.traces` and :mod:`engine.observe.meters`;
per-call log records in :mod:`engine.observe.logs`; usage in
:mod:`engine.observe.usage`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.core import events as ev
from engine.observe.logs import FORMAT, CallFilter, call_context, current_call, log_calls
from engine.observe.usage import CallUsage, TurnUsage, UsageLedger

if TYPE_CHECKING:
    from engine.actors.session import Session
    from engine.observe.meters import CallMeters
    from engine.observe.traces import CallTrace

log = logging.getLogger("engine.observe")

OBSERVED: tuple[type, ...] = (
    ev.StateChanged,
    ev.TurnMetrics,
    ev.ToolCall,
    ev.ToolResult,
    ev.Interrupted,
    ev.Error,
    ev.Reconnecting,
    ev.Reconnected,
    ev.Closed,
)
"""The events an observer reads (never audio: the per-chunk path is left alone)."""
TRANSCRIPTS: tuple[type, ...] = (ev.UserTranscript, ev.AssistantTranscript)
"""Read too when the application opts in to the words (``capture_text``)."""


class Observer:
    """One session's trace, metrics and usage: a sync session callback (inline, cheap)."""

    def __init__(self, session: Session, trace: CallTrace | None, meters: CallMeters | None) -> None:
        self.trace = trace
        self.meters = meters
        self.ledger = UsageLedger()
        self._session: Session | None = session  # until the model is known (the provider fills it in)

    def __call__(self, event: object) -> None:
        now = time.time_ns()
        if self._session is not None and isinstance(event, ev.StateChanged):
            self._attach(self._session)
            self._session = None
        if isinstance(event, ev.TurnMetrics):
            self.ledger.add(event)
        if self.trace is not None:
            self.trace.handle(event, now)
        if self.meters is not None:
            self.meters.handle(event, now)

    def _attach(self, session: Session) -> None:
        """Once connected: the model the provider chose."""
        trace = self.trace
        if trace is None:
            return
        model = session.config.model
        if model:
            trace.call.set_attribute("gen_ai.request.model", model)

    def _step(self, machine: str, old: str, new: str) -> None:
        """The core's ``on_step`` hook: runs inside the core's step, so it must never raise."""
        if self.trace is not None:
            try:
                self.trace.step(machine, new, time.time_ns())
            except Exception:  # an exporter's fault must not break the conversation
                log.exception("engine.observe: tracing a %s step failed", machine)

    def usage(self) -> CallUsage:
        """Token usage by modality and cache, per turn and for the call, with its cost."""
        return self.ledger.usage()


def instrument(
    session: Session,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_text: bool = False,
    call_id: str | None = None,
    traces: bool = True,
    metrics: bool = True,
    attributes: Mapping[str, str] | None = None,
) -> Observer:
    """Trace and measure ``session`` (call before ``connect()``); returns its :class:`Observer`.

    Args:
        tracer_provider, meter_provider: OpenTelemetry providers (default: the global ones;
            with no SDK configured, the API's no-op ones).
        capture_text: put the words on the spans (transcripts, tool arguments and results,
            error messages); off by default.
        call_id: the call's id, an attribute of the call span (default: the id set by
            :func:`~engine.observe.logs.call_context`, if any).
        traces, metrics: turn either off.
        attributes: more attributes for the call span and every metric point (where the
            call runs: ``{"engine.host": ...}`` on a dispatcher's call host).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (``pip install engine[otel]``).
    """
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry import trace as otel_trace
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError("engine.observe needs opentelemetry-api: pip install 'engine[otel]'") from exc
    from engine.actors.loop import loop_clock
    from engine.observe.meters import CallMeters, instruments_of
    from engine.observe.traces import CallTrace

    system = session.provider.name
    common: dict[str, Any] = {"gen_ai.system": system, "gen_ai.provider.name": system, **(attributes or {})}
    call_id = call_id if call_id is not None else current_call()[0]

    def clock() -> float:  # the session's loop clock, read on the first event (in the loop)
        return loop_clock()()

    trace = meters = None
    if traces:
        tracer = otel_trace.get_tracer("engine", tracer_provider=tracer_provider)
        span_attributes = {**common, "gen_ai.operation.name": "realtime"}
        if call_id is not None:
            span_attributes["engine.call.id"] = call_id
        trace = CallTrace(tracer, span_attributes, capture_text=capture_text, clock=clock)
        if not trace.call.is_recording():  # no SDK configured: every span would be a no-op
            trace.call.end()
            trace = None
    if metrics:
        meter = otel_metrics.get_meter("engine", meter_provider=meter_provider)
        meters = CallMeters(instruments_of(meter), common)
    observer = Observer(session, trace, meters)
    if trace is not None:  # every machine from its initial state; each move as the machine makes it
        trace.machines(dict(session.states))
        session.watch_steps(observer._step)
    session.on(*OBSERVED, *(TRANSCRIPTS if capture_text and traces else ()))(observer)
    return observer


__all__ = [
    "FORMAT",
    "OBSERVED",
    "CallFilter",
    "CallUsage",
    "Observer",
    "TurnUsage",
    "call_context",
    "current_call",
    "instrument",
    "log_calls",
]
