"""The response slot: requests, cancels, deadlines, tool calls and what follows a freed slot.

The server allows one response per conversation. A request while the slot is
busy (or tools are open, or the session is not ready) is owed (the ``owed``
machine) and sent when the slot frees; a cancel before ``response.created`` is
deferred until the id is known. Every call gets exactly one output;
``awaiting_tool`` is left only when all are answered, then one follow-up
response is asked for (or left to the server when it continues by itself).

The entry and exit actions the response table names (``_start_waiting``,
``_watch_stall`` ...) arm and disarm the slot's deadlines; :meth:`_deadline`
handles them when they fire. Protocol facts: docs/protocol.md §7 and §9; why: docs/peers.md
§2.1 and §2.3.
"""

from __future__ import annotations

from engine.core import events as ev
from engine.core.base import CANCEL_TIMER, RESPONSE_TIMER, RETRY_TIMER, STALL_TIMER, CoreBase
from engine.core.effects import StartTool
from engine.core.states import Owed, Phase, State
from engine.errors import ErrorCode, ErrorSource
from engine.protocol import client as c
from engine.protocol.items import Item

_WAITING = (Phase.REQUESTED, Phase.SERVER_OWED, Phase.CANCEL_DEFERRED)


class ResponseSlot(CoreBase):
    """The slot's commands, deadlines and tool bookkeeping."""

    # ------------------------------------------------------------------ requests and cancels

    def _request_response(self, params: c.ResponseParams | None = None) -> None:
        if self.state is State.CLOSED:
            self._error(ErrorCode.SESSION_CLOSED, "response requested after close", source=ErrorSource.LOCAL)
            return
        if (
            self.state in (State.CONNECTING, State.RECONNECTING)
            or self.phase is not Phase.IDLE
            or self.calls.open()
        ):
            self._owe("owe")  # coalesced: sent when the slot frees (and tools are answered)
            return
        event_id = self._new_id("evt_resp")
        self._create_event_id = event_id
        self._send(c.ResponseCreate(response=params, event_id=event_id))
        self.turns.mark("response_requested", self._clock())
        self._fire_response("request")

    def _cancel(self, *, send: bool) -> bool:
        """Move the slot to cancelling; ``response.cancel`` goes out once the id is known."""
        phase = self.phase
        if phase is Phase.SERVER_OWED and not send:
            self._fire_response("withdraw")  # the user took the floor: the server will not reply
            return True
        if phase not in (Phase.REQUESTED, Phase.SERVER_OWED, Phase.GENERATING):
            return False
        if phase is Phase.GENERATING:
            self._interrupted.add(self._response_id)
            if send:
                self._send(c.ResponseCancel(response_id=self._response_id))
        # From requested or server_owed the cancel waits for response.created (cancel_deferred).
        self._fire_response("cancel")
        return True

    def _send_deferred_cancel(self) -> None:
        """``created`` while a cancel waits: now the id is known (docs/protocol.md §7)."""
        self._interrupted.add(self._response_id)
        self._send(c.ResponseCancel(response_id=self._response_id))

    def _after_slot_freed(self) -> None:
        """The slot is idle: run tools, send what is owed, or hand the floor back."""
        if self.calls.open():
            if self.state is State.RESPONDING:
                self._fire("response_finished")
            return
        owed = self.owed
        if owed is Owed.TOOL_FOLLOWUP and self.state is not State.USER_SPEAKING:
            self._continue_after_tools()
            return
        if owed is Owed.OWED:
            self._owe("paid")
            self._request_response()
            return
        if self.state is State.RESPONDING:
            self._fire("response_finished")

    # ------------------------------------------------------------------ tools

    def _start(self, call_id: str) -> None:
        call = self.calls.track(call_id)
        call.started = True
        self.turns.tool_started(self._clock())
        name = call.name or ""
        arguments = call.arguments or ""
        self.history.record_call(call.item_id, call_id, name, arguments)
        self._emit(ev.ToolCall(call_id=call_id, name=name, arguments=arguments, response_id=call.response_id))
        self._out.append(StartTool(call_id=call_id, name=name, arguments=arguments))

    def _answer(self, call_id: str, output: str, *, is_error: bool) -> None:
        call = self.calls.track(call_id)
        if call.started:
            self.turns.tool_finished(self._clock())
        call.answered = True
        item = Item.function_call_output(call_id, output, id=self._new_id("item"))
        self._send_or_hold(c.ConversationItemCreate(item=item))
        self.history.add(item)
        self._emit(ev.ToolResult(call_id=call_id, name=call.name or "", output=output, is_error=is_error))
        self._owe("output_sent")

    def _maybe_continue_after_tools(self) -> None:
        if self.calls.open() or self.phase is not Phase.IDLE:
            return  # more answers to come, or response.done will get here
        if self.state in (State.AWAITING_TOOL, State.SESSION_READY, State.RESPONDING):
            self._continue_after_tools()

    def _continue_after_tools(self) -> None:
        # The follow-up response also answers any request made while the tools ran.
        self.calls.forget_answered()
        if self.options.server_continues_after_tools:
            self._owe("left_to_server")
            self._fire_response("expect")  # expected from the server, not sent
        else:
            self._owe("paid")
            self._request_response()

    def _settle_calls(self, response_id: str | None) -> None:
        """Start calls whose arguments only ``response.done`` completed; answer the abandoned."""
        for call in self.calls.of_response(response_id):
            if call.started:
                continue
            if call.arguments is not None:
                self._start(call.call_id)
            else:
                self._answer(
                    call.call_id,
                    '{"error":"the call was interrupted before its arguments were complete"}',
                    is_error=True,
                )

    # ------------------------------------------------------------------ deadlines (entry/exit actions)

    def _start_waiting(self) -> None:
        self._waiting_since = self._clock()
        self._arm(RESPONSE_TIMER, self.options.response_created_timeout)

    def _keep_waiting(self) -> None:
        # A deferred cancel waits for the response.created the request was waiting for.
        left = self._waiting_since + self.options.response_created_timeout - self._clock()
        self._arm(RESPONSE_TIMER, max(left, 0.0))

    def _stop_waiting(self) -> None:
        self._disarm(RESPONSE_TIMER)

    def _forget_create(self) -> None:
        self._create_event_id = None  # a late error about that create is no longer ours

    def _watch_stall(self) -> None:
        self._heard = self._clock()
        if self.options.stall_timeout is not None:
            self._arm(STALL_TIMER, self.options.stall_timeout)

    def _stop_stall_watch(self) -> None:
        self._disarm(STALL_TIMER)

    def _arm_cancel_deadline(self) -> None:
        self._arm(CANCEL_TIMER, self.options.cancel_timeout)

    def _disarm_cancel_deadline(self) -> None:
        self._disarm(CANCEL_TIMER)

    def _disarm_all(self) -> None:
        self._disarm(RESPONSE_TIMER, STALL_TIMER, CANCEL_TIMER)

    def _deadline(self, name: str) -> None:
        """A timer fired: act only if its phase still holds (a stale timer is ignored)."""
        self._timers.discard(name)
        phase = self.phase
        if name == RESPONSE_TIMER and phase in _WAITING:
            self._fire_response("created_timeout")
            self._error(
                ErrorCode.RESPONSE_TIMEOUT,
                f"no response.created within {self.options.response_created_timeout}s",
                source=ErrorSource.SERVER,
            )
            self._after_slot_freed()
        elif name == STALL_TIMER and phase is Phase.GENERATING:
            self._check_stall()
        elif name == CANCEL_TIMER and phase is Phase.CANCELLING:
            rid = self._response_id
            self._fire_response("cancel_timeout")
            self._response_id = None  # stays in _interrupted: whatever it still sends is dropped
            self._error(
                ErrorCode.CANCEL_TIMEOUT,
                f"no response.done for the cancelled response {rid} within "
                f"{self.options.cancel_timeout}s; the slot is free again",
                source=ErrorSource.SERVER,
            )
            self._settle_calls(rid)
            self._after_slot_freed()
        elif name == RETRY_TIMER and phase is Phase.IDLE and self.owed is Owed.OWED:
            self._owe("paid")
            self._request_response()

    def _check_stall(self) -> None:
        """The stall deadline: re-arm for what is left, or cancel a response that went quiet."""
        stall = self.options.stall_timeout
        if stall is None:
            return
        quiet = self._clock() - self._heard
        if quiet < stall:
            self._arm(STALL_TIMER, stall - quiet)  # armed once per response, not per event
            return
        rid = self._response_id
        self._error(
            ErrorCode.RESPONSE_STALLED,
            f"response {rid} sent nothing for {stall}s; it is cancelled",
            source=ErrorSource.SERVER,
        )
        self._interrupted.add(rid)
        self._send(c.ResponseCancel(response_id=rid))
        self._fire_response("stalled")
