"""Acknowledged updates, and the server events the core only reports.

Every ``session.update`` sent after the session is ready is answered by the
server, in order: ``session.updated`` applies the oldest one still pending, an
``error`` whose ``event_id`` names one refuses it (the configuration goes back
to what it was). The ``update`` machine of :mod:`engine.core.states` is
``pending`` while any is unanswered, under the ``update_ack`` deadline. The
application sees :class:`~engine.core.events.ConfigApplied` or
:class:`~engine.core.events.ConfigRejected` with the update's event id.

The other events here change no machine: idle timeout, DTMF, rate limits and
MCP progress reach the application as typed events; anything else decoded but
not modelled reaches it as a :class:`~engine.core.events.RawEvent`, only when
``raw_events`` is on. Protocol facts: docs/protocol.md §2 and §3.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core import events as ev
from engine.core.restore import Restore
from engine.core.states import State, UpdateAck
from engine.errors import ErrorCode, ErrorSource
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.config import ConfigError, SessionConfig, config_from_wire
from engine.protocol.items import ErrorDetail

UPDATE_TIMER = "update_ack"

_MCP: dict[type, tuple[str, str]] = {
    s.McpListToolsInProgress: ("list_tools", "in_progress"),
    s.McpListToolsCompleted: ("list_tools", "completed"),
    s.McpListToolsFailed: ("list_tools", "failed"),
    r.ResponseMcpCallInProgress: ("call", "in_progress"),
    r.ResponseMcpCallCompleted: ("call", "completed"),
    r.ResponseMcpCallFailed: ("call", "failed"),
}


class Updates(Restore):
    """The ``update`` machine's actions and the reported events."""

    raw_events: bool = False
    """Deliver a ``RawEvent`` for every decoded server event the core does not model."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_updates: dict[str, SessionConfig] = {}  # id -> the config before it, oldest first

    @property
    def update_state(self) -> UpdateAck:
        """Whether a ``session.update`` awaits the server's answer."""
        return UpdateAck(self._models["update"].state)

    @property
    def pending_updates(self) -> tuple[str, ...]:
        """The event ids of the updates the server has not answered yet, oldest first."""
        return tuple(self._pending_updates)

    def _reported_table(self) -> dict[type, Callable[[Any], None]]:
        table: dict[type, Callable[[Any], None]] = {
            s.InputAudioBufferTimeoutTriggered: self._on_idle_timeout,
            s.InputAudioBufferDtmfEventReceived: self._on_dtmf,
            s.RateLimitsUpdated: self._on_rate_limits,
        }
        for kind in _MCP:
            table[kind] = self._on_mcp
        return table

    # ------------------------------------------------------------------ acknowledged updates

    def _send_update(self, config: SessionConfig, before: SessionConfig) -> None:
        """``config`` is asked for: sent now if the session is ready, else by the next handshake.

        Either way it is pending until the server answers (the ready answer covers a held one).
        """
        event_id = self._new_id("evt_update")
        self._pending_updates[event_id] = before
        if self.state not in (State.CONNECTING, State.RECONNECTING):
            self._send(c.SessionUpdate(session=config.to_wire(), event_id=event_id))
        self._step("update", "sent")

    def _on_session_updated(self, event: s.SessionUpdated) -> None:
        if self.state in (State.CONNECTING, State.RECONNECTING):
            # The ready answer is to the configuration sent on session.created, the newest one.
            pending = self._pending_updates
            answered = list(pending)
            pending.clear()
            super()._on_session_updated(event)
            for held in answered:
                self._applied(held, event.session or {})
            if answered:
                self._step("update", "answered")
            return
        pending = self._pending_updates
        event_id = next(iter(pending), None)
        if event_id is not None:
            del pending[event_id]
        applied = self._applied(event_id, event.session or {})
        if event_id is None and applied is not None:
            self.config = applied  # the server changed it by itself: mirror the effective config
        self._step("update", "answered")

    def _applied(self, event_id: str | None, session: dict[str, Any]) -> SessionConfig | None:
        try:
            config: SessionConfig | None = config_from_wire(session) if session else None
        except (ConfigError, TypeError, ValueError, KeyError, AttributeError):
            config = None  # fields this library does not model: the dict still says it all
        self._emit(ev.ConfigApplied(event_id=event_id, session=session, config=config))
        return config

    def _update_refused(self, detail: ErrorDetail) -> bool:
        """An error that names a pending update refuses it; True when it did."""
        pending = self._pending_updates
        event_id = detail.event_id
        if event_id is None or event_id not in pending:
            return False
        newest = list(pending)[-1]
        before = pending.pop(event_id)
        if event_id == newest:
            self.config = before  # the server kept the configuration it had
        code = detail.code or detail.type or ErrorCode.INVALID_REQUEST_ERROR
        message = detail.message or "session.update refused"
        self._error(code, message)
        self._emit(ev.ConfigRejected(event_id=event_id, code=code, message=message, param=detail.param))
        self._step("update", "answered")
        return True

    def _updates_outstanding(self) -> bool:
        return bool(self._pending_updates)

    def _arm_update_deadline(self) -> None:
        self._arm(UPDATE_TIMER, self.options.response_created_timeout)

    def _disarm_update_deadline(self) -> None:
        self._disarm(UPDATE_TIMER)

    def _deadline(self, name: str) -> None:
        if name != UPDATE_TIMER:
            super()._deadline(name)
            return
        self._timers.discard(name)
        pending = self._pending_updates
        if self.update_state is not UpdateAck.PENDING or not pending:
            return
        if self.state in (State.CONNECTING, State.RECONNECTING):
            # The next socket's ready answer covers them; wait for it with a fresh deadline.
            self._arm(UPDATE_TIMER, self.options.response_created_timeout)
            return
        message = f"no answer to session.update within {self.options.response_created_timeout}s"
        self._error(ErrorCode.UPDATE_TIMEOUT, message)
        for event_id in list(pending):
            self._emit(ev.ConfigRejected(event_id=event_id, code=ErrorCode.UPDATE_TIMEOUT, message=message))
        pending.clear()
        self._step("update", "given_up")

    def _give_up_updates(self) -> None:
        """The session closed: no answer will come."""
        self._pending_updates.clear()
        self._step("update", "given_up")

    # ------------------------------------------------------------------ reported events

    def _on_idle_timeout(self, event: s.InputAudioBufferTimeoutTriggered) -> None:
        self._emit(
            ev.IdleTimeout(
                item_id=event.item_id, audio_start_ms=event.audio_start_ms, audio_end_ms=event.audio_end_ms
            )
        )

    def _on_dtmf(self, event: s.InputAudioBufferDtmfEventReceived) -> None:
        if not event.event:
            self._error(
                ErrorCode.INVALID_EVENT, "dtmf_event_received without a key", source=ErrorSource.PROTOCOL
            )
            return
        self._emit(ev.Dtmf(digit=event.event, received_at=event.received_at))

    def _on_rate_limits(self, event: s.RateLimitsUpdated) -> None:
        self._emit(ev.RateLimits(rate_limits=event.rate_limits))

    def _on_mcp(self, event: Any) -> None:
        stage, status = _MCP[type(event)]
        rid = getattr(event, "response_id", None)
        self._emit(ev.McpProgress(stage=stage, status=status, item_id=event.item_id, response_id=rid))
