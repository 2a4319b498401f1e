"""Admission and the live-call registry: who may start, who is live, why each call ended.

Admission is immediate: at ``max_calls`` live calls, or while draining, a new
call is refused at once (the app answers HTTP 503 or closes the WebSocket with
1013 "try again later"); nothing is queued. Each call logs one structured line
when its carrier stream starts and one when it ends (gateway id, carrier ids,
duration, turns, end reason); carrier credentials never reach the registry.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs

from engine.gateway.agent import Call
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.watch import Feeds

log = logging.getLogger(__name__)

# End reasons, as logged and as the bridge reports them.
CALLER_HUNG_UP = "caller hung up"
CARRIER_GONE = "carrier disconnected"
SHUTTING_DOWN = "gateway shutting down"
NO_START = "the carrier never started the stream"


class Refused(Exception):
    """A call was not admitted; ``reason`` is ``full`` or ``draining``."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"call refused: {reason}")
        self.reason = reason


@attrs.define(eq=False)
class LiveCall:
    """One admitted call, from its socket's upgrade to its end."""

    id: str
    carrier: str
    started_at: float
    state: str = "starting"
    call: Call | None = None
    turns: int = 0
    failed: bool = False
    end_reason: str | None = None
    stop: Callable[[str], None] | None = None
    """Set by the bridge: ends the call cleanly with the given reason."""

    def ids(self) -> str:
        """The carrier's ids as ``key=value`` words for a log line."""
        if self.call is None:
            return "call_id=- stream_id=-"
        return f"call_id={self.call.call_id} stream_id={self.call.stream_id}"


@attrs.frozen(kw_only=True)
class Tracing:
    """OpenTelemetry for every call of a gateway (:mod:`engine.observe`).

    With ``opentelemetry-api`` installed but no SDK configured this costs next to
    nothing (no span is built); without it, nothing at all.

    Attributes:
        attributes: added to each call's spans and metrics (on Ray Serve:
            ``engine.replica``), beside ``engine.call.id`` and ``engine.carrier``.
        tracer_provider, meter_provider: default: OpenTelemetry's global ones.
    """

    attributes: dict[str, str] = attrs.field(factory=dict)
    tracer_provider: Any = None
    meter_provider: Any = None


TRACE_CALLS = Tracing()
"""The gateway's default: every call traced with OpenTelemetry's global providers."""


def trace_call(session: Any, call: LiveCall, tracing: Tracing) -> None:
    """Instrument one call's session (before it connects); nothing without ``opentelemetry-api``."""
    from engine.observe import instrument  # imports OpenTelemetry only when called

    attributes = {"engine.carrier": call.carrier, **tracing.attributes}
    try:
        instrument(
            session,
            call_id=call.id,
            attributes=attributes,
            tracer_provider=tracing.tracer_provider,
            meter_provider=tracing.meter_provider,
        )
    except ImportError:
        return


class CallRegistry:
    """The gateway's live calls: admission, states for metrics, the end of each call, draining."""

    def __init__(
        self, max_calls: int, metrics: GatewayMetrics, *, clock: Callable[[], float] = time.monotonic
    ):
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        self.max_calls = max_calls
        self.metrics = metrics
        self.draining = False
        self._clock = clock
        self._live: dict[str, LiveCall] = {}
        self._ids = itertools.count(1)
        self._idle = anyio.Event()
        self._idle.set()
        self.feeds = Feeds()
        self.tracing: Tracing | None = TRACE_CALLS
        """Each live call's view for ``/calls`` and read-only watchers (:mod:`engine.gateway.watch`)."""

    @property
    def live(self) -> tuple[LiveCall, ...]:
        """The live calls, oldest first."""
        return tuple(self._live.values())

    def refusal(self) -> str | None:
        """Why a new call would be refused now (``draining``, ``full``), or ``None``."""
        if self.draining:
            return "draining"
        if len(self._live) >= self.max_calls:
            return "full"
        return None

    def check(self) -> None:
        """Raise :class:`Refused` (and count it) if a new call would be refused now."""
        reason = self.refusal()
        if reason is not None:
            self.metrics.calls_refused.labels(reason=reason).inc()
            log.warning("call refused: %s (%d live, max %d)", reason, len(self._live), self.max_calls)
            raise Refused(reason)

    def admit(self, carrier: str) -> LiveCall:
        """Take a slot for a new call now, or raise :class:`Refused`."""
        self.check()
        call = LiveCall(id=f"call-{next(self._ids)}", carrier=carrier, started_at=self._clock())
        self._live[call.id] = call
        if self._idle.is_set():
            self._idle = anyio.Event()
        self.metrics.live_calls.labels(state=call.state).inc()
        return call

    def set_state(self, call: LiveCall, state: str) -> None:
        """Move a live call to ``state`` (``active``, ``ending``)."""
        if call.id not in self._live or call.state == state:
            return
        self.metrics.live_calls.labels(state=call.state).dec()
        self.metrics.live_calls.labels(state=state).inc()
        call.state = state

    def started(self, call: LiveCall, info: Call) -> None:
        """The carrier's stream started: log the call's start line."""
        call.call = info
        self.metrics.calls_started.labels(carrier=call.carrier).inc()
        log.info("call started id=%s carrier=%s %s", call.id, call.carrier, call.ids())

    def observe(self, call: LiveCall, session: Any) -> None:
        """The call's session was built: its events feed the live view (``/calls``, watchers) and,
        with :attr:`tracing` on, OpenTelemetry (:func:`trace_call`)."""
        self.feeds.open(call.id, call.carrier, session)
        if self.tracing is not None:
            trace_call(session, call, self.tracing)

    def finish(self, call: LiveCall, reason: str, *, failed: bool = False) -> None:
        """The call ended: log its end line, free its slot, wake :meth:`wait_idle`."""
        if self._live.pop(call.id, None) is None:
            return
        self.feeds.discard(call.id)
        call.end_reason = reason
        call.failed = failed
        self.metrics.live_calls.labels(state=call.state).dec()
        if failed:
            self.metrics.calls_failed.labels(carrier=call.carrier).inc()
        duration = self._clock() - call.started_at
        log.info(
            "call ended id=%s carrier=%s %s duration_s=%.1f turns=%d reason=%r",
            call.id,
            call.carrier,
            call.ids(),
            duration,
            call.turns,
            reason,
        )
        if not self._live:
            self._idle.set()

    def drain(self) -> None:
        """Stop admitting calls (readiness turns 503); live calls go on."""
        self.draining = True

    def end_all(self, reason: str = SHUTTING_DOWN) -> None:
        """Ask every live call to end cleanly (session closed, then the carrier's socket)."""
        for call in self.live:
            if call.stop is not None:
                call.stop(reason)

    async def wait_idle(self) -> None:
        """Return once no call is live."""
        await self._idle.wait()
