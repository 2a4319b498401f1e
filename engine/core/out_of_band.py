"""Out-of-band responses (``Session.ask``): answers that never enter the conversation.

A ``response.create`` whose ``response.conversation`` is ``"none"`` runs beside
the response slot: the server adds nothing of it to the default conversation,
and it may run while the in-band response does, its events interleaved with
that one's. The server echoes ``response.metadata`` on ``response.created`` and
``response.done``: each ask is tagged ``{"engine_oob": <request id>}``, and the
``response.created`` carrying the tag names the response id every later event
of it carries (docs/protocol.md §7.1).

Such a response moves none of the machines of :mod:`engine.core.states`: it
never occupies the slot, counts in ``TurnMetrics``, enters the history, is cut
by a barge-in or replayed by a restore. Its text is gathered and delivered as
:class:`~engine.core.events.OutOfBandDone`; whatever ends it without an answer
gives :class:`~engine.core.events.OutOfBandFailed`: a ``failed`` or
``cancelled`` response, an ``error`` naming the ask's ``event_id``, its
deadline, the socket dropping. The pending asks are data (a dict keyed by
request id), not a state: they change what no other input does.
"""

from __future__ import annotations

from typing import Any

import attrs

from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.effects import Effect
from engine.core.states import State
from engine.core.updates import Updates
from engine.errors import ErrorCode, ErrorSource
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.items import ErrorDetail, Item

ASK_TIMER = "ask:"
"""Prefix of an ask's deadline timer; the request id follows."""
_KEPT_GIVEN_UP = 64
"""Given-up asks remembered until their response ends (their late events are dropped quietly)."""
_TEXT = (r.ResponseOutputTextDelta, r.ResponseOutputAudioTranscriptDelta)


@attrs.define
class _Ask:
    """One out-of-band request: its create's event id, its response once named, its text so far."""

    event_id: str
    timeout: float
    response_id: str | None = None
    deltas: list[str] = attrs.Factory(list)
    final: str | None = None
    given_up: bool = False


class OutOfBand(Updates):
    """Asks and the events of their responses; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._asks: dict[str, _Ask] = {}  # request id -> ask, pending or given up, oldest first
        self._aside_of: dict[str, str] = {}  # response id -> request id
        self.newest_ask: str | None = None
        """The request id the latest ``Ask`` command got (its events carry it)."""

    @property
    def pending_asks(self) -> tuple[str, ...]:
        """The request ids of the asks still waiting for an answer, oldest first."""
        return tuple(request for request, ask in self._asks.items() if not ask.given_up)

    # ------------------------------------------------------------------ the command

    def _ask(self, command: cmd.Ask) -> list[Effect]:
        state = self.state
        if state is State.CLOSED:
            self._error(ErrorCode.SESSION_CLOSED, "ask() after the session closed", source=ErrorSource.LOCAL)
            return self._flush()
        request = self.newest_ask = self._new_id("ask")
        if state is State.RECONNECTING:
            message = "the connection is down (reconnecting): ask again once it is back"
            self._emit(ev.OutOfBandFailed(request_id=request, code=ErrorCode.ASK_LOST, message=message))
            return self._flush()
        event_id = self._new_id("evt_ask")
        self._asks[request] = _Ask(event_id=event_id, timeout=command.timeout)
        # While connecting the create waits for readiness (held); the deadline runs meanwhile.
        self._send_or_hold(c.ResponseCreate(response=command.params(request), event_id=event_id))
        self._arm(ASK_TIMER + request, command.timeout)
        return self._flush()

    # ------------------------------------------------------------------ server events

    def _aside(self, event: Any) -> bool:
        """Handle ``event`` if it is an out-of-band response's (or answers an ask); True when it was."""
        kind = type(event)
        if kind is r.ResponseCreated:
            return self._aside_created(event)
        if kind is s.ErrorEvent:
            return self._ask_refused(event.error)
        rid = event.response.id if kind is r.ResponseDoneEvent else getattr(event, "response_id", None)
        request = self._aside_of.get(rid) if rid is not None else None
        if request is None:
            return False
        ask = self._asks[request]
        if kind in _TEXT:
            ask.deltas.append(event.delta)
        elif kind is r.ResponseOutputTextDone:
            ask.final = event.text
        elif kind is r.ResponseOutputAudioTranscriptDone and event.transcript is not None:
            ask.final = event.transcript
        elif kind is r.ResponseDoneEvent:
            self._aside_done(request, ask, event)
        # Anything else of it (items, parts, audio, a function call) is not the slot's: dropped.
        return True

    def _aside_created(self, event: r.ResponseCreated) -> bool:
        request = (event.response.metadata or {}).get(cmd.ASK_TAG)
        rid = event.response.id
        if not isinstance(request, str) or rid is None:
            return False  # not tagged by an ask: the slot's response
        ask = self._asks.get(request)
        if ask is None:  # an ask forgotten long ago: still not the slot's, and nobody waits
            ask = self._asks[request] = _Ask(event_id="", timeout=0.0, given_up=True)
        ask.response_id = rid
        self._aside_of[rid] = request
        return True

    def _aside_done(self, request: str, ask: _Ask, event: r.ResponseDoneEvent) -> None:
        response = event.response
        del self._asks[request]
        self._aside_of.pop(response.id or "", None)
        self._disarm(ASK_TIMER + request)
        if ask.given_up:
            return
        status = response.status or "completed"
        if status in ("failed", "cancelled"):
            details = response.status_details or {}
            error = details.get("error")
            why = (error.get("message") if isinstance(error, dict) else None) or details.get("reason")
            message = f"the out-of-band response ended {status}" + (f": {why}" if why else "")
            self._emit(
                ev.OutOfBandFailed(
                    request_id=request, code=ErrorCode.ASK_FAILED, message=message, response_id=response.id
                )
            )
            return
        text = "".join(ask.deltas) if ask.deltas else ask.final
        if text is None:
            text = "".join(_text_of(item) for item in response.output)
        self._emit(
            ev.OutOfBandDone(
                request_id=request,
                response_id=response.id,
                text=text,
                status=status,
                usage=event.effective_usage,
            )
        )

    def _ask_refused(self, detail: ErrorDetail) -> bool:
        """An error naming an ask's create refuses it (no response will come); True when it did."""
        if detail.event_id is None:
            return False
        request = next((k for k, a in self._asks.items() if a.event_id == detail.event_id), None)
        if request is None:
            return False
        ask = self._asks.pop(request)
        self._disarm(ASK_TIMER + request)
        code = detail.code or detail.type or ErrorCode.ASK_FAILED
        message = detail.message or "response.create refused"
        self._error(code, f"out-of-band request refused: {message}")
        if not ask.given_up:
            self._emit(ev.OutOfBandFailed(request_id=request, code=code, message=message))
        return True

    # ------------------------------------------------------------------ endings

    def _deadline(self, name: str) -> None:
        if not name.startswith(ASK_TIMER):
            super()._deadline(name)
            return
        self._timers.discard(name)
        request = name[len(ASK_TIMER) :]
        ask = self._asks.get(request)
        if ask is None or ask.given_up:
            return
        # Given up, not forgotten: its late events must still not reach the slot. Not
        # cancelled either: the response is left to end (a cancel by id is not worth its risk).
        ask.given_up = True
        message = f"no out-of-band answer within {ask.timeout}s"
        self._emit(
            ev.OutOfBandFailed(
                request_id=request, code=ErrorCode.ASK_TIMEOUT, message=message, response_id=ask.response_id
            )
        )
        given_up = [k for k, a in self._asks.items() if a.given_up]
        for old in given_up[: max(0, len(given_up) - _KEPT_GIVEN_UP)]:
            self._forget_ask(old)

    def _connection_lost(self) -> list[Effect]:
        if self.state not in (State.CLOSED, State.RECONNECTING):
            # The old socket's responses can send nothing more; nothing of them is restored.
            for request, ask in list(self._asks.items()):
                self._forget_ask(request)
                if not ask.given_up:
                    message = "the connection dropped before the out-of-band answer came"
                    self._emit(
                        ev.OutOfBandFailed(
                            request_id=request,
                            code=ErrorCode.ASK_LOST,
                            message=message,
                            response_id=ask.response_id,
                        )
                    )
        return super()._connection_lost()

    def _give_up_asks(self) -> None:
        """The session closed: the waiters are woken by the runtime (``SessionClosed``)."""
        for request in list(self._asks):
            self._forget_ask(request)

    def _forget_ask(self, request: str) -> None:
        ask = self._asks.pop(request)
        if ask.response_id is not None:
            self._aside_of.pop(ask.response_id, None)
        self._disarm(ASK_TIMER + request)


def _text_of(item: Item) -> str:
    return "".join((part.text or part.transcript or "") for part in item.content or ())
