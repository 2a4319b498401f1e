"""The server-event handlers: what each event does around its transition.

Each handler reads one decoded server event, steps the machines of
:mod:`engine.core.states` and records effects. Response-scoped events are
checked against the slot (:meth:`Handlers._in_flight`): events of a response
that was cut off are dropped silently; any other event of a response that is
not in flight is reported and ignored, so it never starts a tool, never reaches
the application and never enters the history.

Server errors: ``response_cancel_not_active`` and
``conversation_already_has_active_response`` are benign. An error is fatal
only when retrying cannot help: the server refused our credentials
(``authentication_error``/``permission_error`` types, ``invalid_api_key``,
``insufficient_quota``) or our configuration while connecting.
Protocol facts: docs/protocol.md §3.1 and §10; why: docs/peers.md §2.1.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

from engine.core import events as ev
from engine.core.base import RETRY_TIMER, log
from engine.core.effects import ArmTimer, Emit
from engine.core.out_of_band import OutOfBand
from engine.core.states import Phase, State
from engine.errors import ErrorCode, ErrorSource
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.items import Item

BENIGN_ERRORS = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})
FATAL_ERROR_TYPES = frozenset({"authentication_error", "permission_error"})
FATAL_ERROR_CODES = frozenset({"invalid_api_key", "insufficient_quota"})
# session_expired is not fatal: the server's session ended, not the call (the session rolls over).
_CANCELLING = (Phase.CANCELLING, Phase.CANCEL_DEFERRED)


class Handlers(OutOfBand):
    """One method per server event the core models."""

    def _handler_table(self) -> dict[type, Callable[[Any], None]]:
        return {
            s.SessionCreated: self._on_session_created,
            s.SessionUpdated: self._on_session_updated,
            s.ErrorEvent: self._on_error,
            s.ConversationItemAdded: self._on_item_added,
            s.ConversationItemCreated: self._on_item_added,
            s.ConversationItemDone: self._on_item_done,
            s.ConversationItemDeleted: self._on_item_deleted,
            s.ConversationItemTruncated: self._on_item_truncated,
            s.InputAudioBufferSpeechStarted: self._on_speech_started,
            s.InputAudioBufferSpeechStopped: self._on_speech_stopped,
            s.InputAudioTranscriptionDelta: self._on_transcription_delta,
            s.InputAudioTranscriptionCompleted: self._on_transcription_completed,
            s.InputAudioTranscriptionFailed: self._on_transcription_failed,
            r.ResponseCreated: self._on_response_created,
            r.ResponseDoneEvent: self._on_response_done,
            r.ResponseOutputItemAdded: self._on_output_item,
            r.ResponseOutputItemDone: self._on_output_item,
            r.ResponseOutputAudioDelta: self._on_audio_delta,
            r.ResponseOutputAudioTranscriptDelta: self._on_transcript_delta,
            r.ResponseOutputAudioTranscriptDone: self._on_transcript_done,
            r.ResponseOutputTextDelta: self._on_text_delta,
            r.ResponseOutputTextDone: self._on_text_done,
            r.ResponseFunctionCallArgumentsDone: self._on_arguments_done,
            # Nothing to do with these but check that they fit (and count for the stall deadline).
            r.ResponseContentPartAdded: self._on_part_event,
            r.ResponseContentPartDone: self._on_part_event,
            r.ResponseOutputAudioDone: self._on_part_event,
            r.ResponseFunctionCallArgumentsDelta: self._on_part_event,
            # Reported to the application, nothing else (engine.core.updates).
            **self._reported_table(),
        }

    # ------------------------------------------------------------------ errors and items

    def _on_error(self, event: s.ErrorEvent) -> None:
        detail = event.error
        if self._update_refused(detail):
            return
        code = detail.code or detail.type or ErrorCode.SERVER_ERROR
        ours = detail.event_id is not None and detail.event_id == self._create_event_id
        if code in BENIGN_ERRORS:
            log.debug("benign server error %s: %s", code, detail.message)
            if code == "conversation_already_has_active_response" and self.phase is Phase.REQUESTED:
                # Our create was refused; try again once the other response is over.
                self._fire_response("done")
                self._owe("owe")
                self._out.append(ArmTimer(name=RETRY_TIMER, delay=0.5))
            elif code == "response_cancel_not_active" and self.phase in _CANCELLING:
                self._fire_response("done")
                self._after_slot_freed()
            return
        fatal = (
            detail.type in FATAL_ERROR_TYPES
            or code in FATAL_ERROR_CODES
            or (self.state is State.CONNECTING and (detail.param or "").startswith("session."))
        )
        self._error(code, detail.message or "server error without a message", fatal=fatal)
        if ours and self.phase is Phase.REQUESTED:
            # Our response.create was refused: the slot is free again.
            self._fire_response("done")
            self._after_slot_freed()

    # ------------------------------------------------------------------ items

    def _on_item_added(self, event: s.ConversationItemAdded | s.ConversationItemCreated) -> None:
        item = event.item
        if item is None:
            return
        if item.type == "function_call" and item.call_id:
            self.calls.hint(item.call_id, name=item.name, item_id=item.id)
        self.history.add(item)
        if item.id not in self._announced:
            # Announced once, whichever of output_item.added / item.added came first.
            self._announced[item.id] = None
            if len(self._announced) > 256:
                del self._announced[next(iter(self._announced))]
            self._emit(ev.ItemCreated(item=item))

    def _on_item_done(self, event: s.ConversationItemDone) -> None:
        if event.item is None:
            return
        if event.item.type == "function_call" and event.item.call_id:
            self.calls.hint(event.item.call_id, name=event.item.name, item_id=event.item.id)
        self._emit(ev.ItemUpdated(item=self.history.merge(event.item)))

    def _on_item_deleted(self, event: s.ConversationItemDeleted) -> None:
        self.history.remove(event.item_id)

    def _on_item_truncated(self, event: s.ConversationItemTruncated) -> None:
        item = self.history.get(event.item_id)
        if item is not None:
            self._emit(ev.ItemUpdated(item=item))

    def _on_output_item(self, event: r.ResponseOutputItemAdded | r.ResponseOutputItemDone) -> None:
        if event.item is None:
            return
        if not self._in_flight(event, event.response_id, cancelling=True):
            return  # an item of a response that is not running would open a call nothing closes
        self._track_call(event.item, event.response_id or self._response_id)
        self.history.add(event.item)

    def _track_call(self, item: Item, response_id: str | None) -> None:
        if item.type != "function_call" or not item.call_id or self.calls.finished(item.call_id):
            return
        done = item.status == "completed" and item.arguments
        self.calls.track(
            item.call_id,
            name=item.name,
            arguments=item.arguments if done else None,
            response_id=response_id,
            item_id=item.id,
        )

    # ------------------------------------------------------------------ user speech

    def _on_speech_started(self, event: s.InputAudioBufferSpeechStarted) -> None:
        self._emit(ev.SpeechStarted(item_id=event.item_id, audio_start_ms=event.audio_start_ms))
        # With VAD on, the user's turn opens and a response in flight is cut (the table's
        # before-actions). Inworld fires VAD events in manual mode too; then the app owns turns.
        self._fire("user_started")

    def _on_speech_stopped(self, event: s.InputAudioBufferSpeechStopped) -> None:
        self._emit(ev.SpeechStopped(item_id=event.item_id, audio_end_ms=event.audio_end_ms))
        self.turns.mark("user_speech_ended", self._clock())
        self._fire("user_stopped")

    def _vad_on(self) -> bool:
        return self.config.turn_detection is not None

    def _server_will_respond(self) -> bool:
        return self.config.server_creates_response

    def _has_open_calls(self) -> bool:
        return bool(self.calls.open())

    def _voice_lock_applies(self) -> bool:
        return self.options.voice_locked_after_audio

    def _await_server_response(self) -> None:
        """A server-handled turn: the server sends response.created by itself."""
        if self.phase is Phase.IDLE:
            self._fire_response("expect")
        elif not self.config.server_interrupts_response:
            # The server still has the old response (it does not cancel by itself), so it will
            # not answer this turn; ask once that response is over.
            self._owe("owe")

    def _on_transcription_delta(self, event: s.InputAudioTranscriptionDelta) -> None:
        text = self._user_text.get(event.item_id, "") + event.delta
        self._user_text[event.item_id] = text
        self._emit(ev.UserTranscript(item_id=event.item_id, text=text, final=False, delta=event.delta))

    def _on_transcription_completed(self, event: s.InputAudioTranscriptionCompleted) -> None:
        self._user_text.pop(event.item_id, None)
        self._step("user_turn", "settled")
        text = event.transcript.strip()
        self.history.set_transcript(event.item_id, text)
        if text:
            self._emit(ev.UserTranscript(item_id=event.item_id, text=text, final=True))

    def _on_transcription_failed(self, event: s.InputAudioTranscriptionFailed) -> None:
        self._user_text.pop(event.item_id, None)
        self._step("user_turn", "settled")
        message = event.error.message if event.error else "transcription failed"
        self._error(ErrorCode.TRANSCRIPTION_FAILED, f"item {event.item_id}: {message}")

    # ------------------------------------------------------------------ responses

    def _on_response_created(self, event: r.ResponseCreated) -> None:
        rid = event.response.id
        if self.phase is Phase.GENERATING:
            self._error(
                ErrorCode.UNEXPECTED_EVENT, f"response.created for {rid} while {self._response_id} is active"
            )
            self._response_id = rid
            return
        self._response_id = rid
        self.turns.mark("response_created", self._clock())
        self._emit(ev.ResponseStarted(response_id=rid))
        # The table does the rest: a deferred cancel goes out now, or the stall deadline is
        # armed and the conversation responds; the user's turn and a tool follow-up are settled.
        self._fire_response("created")

    def _on_response_done(self, event: r.ResponseDoneEvent) -> None:
        response = event.response
        if response.id in self._interrupted and response.id != self._response_id:
            # A response given up after its cancel went unanswered: nothing of it counts now.
            self._interrupted.discard(response.id)
            return
        if self.phase is Phase.IDLE:
            self._error(ErrorCode.UNEXPECTED_EVENT, f"response.done for {response.id}, which is not active")
            return
        self._fire_response("done")
        self._response_id = None
        self._interrupted.discard(response.id)
        for item in response.output:
            self._track_call(item, response.id)
        self._emit(
            ev.ResponseDone(
                response_id=response.id,
                status=response.status,
                usage=event.effective_usage,
                status_details=response.status_details,
            )
        )
        if response.status == "failed":
            error = (response.status_details or {}).get("error") or {}
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            self._error(str(code or ErrorCode.RESPONSE_FAILED), str(message or response.status_details))
        self.turns.add_usage(event.effective_usage)
        self._settle_calls(response.id)
        self._after_slot_freed()
        if self._resp.state == Phase.IDLE and not self.calls.open():  # the turn is over
            self._emit(ev.TurnMetrics(**self.turns.finish(response.id, self._clock())))

    def _on_audio_delta(self, event: r.ResponseOutputAudioDelta) -> None:
        # Most server events are this one: locals and one Emit, nothing else.
        rid = event.response_id
        if rid in self._interrupted:
            return  # the response was cut off; its late audio must not play
        try:
            pcm = binascii.a2b_base64(event.delta, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            self._error(
                ErrorCode.INVALID_AUDIO,
                f"audio delta for item {event.item_id} is not base64: {exc}",
                source=ErrorSource.PROTOCOL,
            )
            return
        if (rid != self._response_id or self._resp.state != "generating") and not self._in_flight(event, rid):
            return
        now = self._heard = self._clock()
        ledger = self.ledger
        if not ledger.has_audio(rid):
            self._step("voice", "audio_produced")
        if self.turns.get("first_audio_received") is None:
            # A preamble is spoken but is not the answer: timed apart (docs/protocol.md §5.1).
            spoken = self.history.get(event.item_id)
            preamble = spoken is not None and spoken.is_preamble
            self.turns.mark("preamble_audio_received" if preamble else "first_audio_received", now)
            self._audio_responses.append(rid)
            while len(self._audio_responses) > 2:
                ledger.forget(self._audio_responses.pop(0))
        item_id = event.item_id
        ledger.received(rid, item_id, len(pcm), now)
        self._out.append(
            Emit(
                ev.AudioOut(
                    pcm=pcm,
                    sample_rate=self.config.output_format.rate,
                    item_id=item_id,
                    response_id=rid,
                    encoding=self.config.output_format.type,
                )
            )
        )

    def _on_transcript_delta(self, event: r.ResponseOutputAudioTranscriptDelta) -> None:
        if not self._in_flight(event, event.response_id):
            return
        text = self.history.append_text(event.item_id, event.delta)
        self._out.append(
            Emit(
                ev.AssistantTranscript(
                    item_id=event.item_id, response_id=event.response_id, delta=event.delta, text=text
                )
            )
        )

    def _on_transcript_done(self, event: r.ResponseOutputAudioTranscriptDone) -> None:
        if not self._in_flight(event, event.response_id):
            return
        text = self.history.finish_text(event.item_id, event.transcript)
        self._emit(
            ev.AssistantTranscript(
                item_id=event.item_id, response_id=event.response_id, delta="", text=text, final=True
            )
        )

    def _on_text_delta(self, event: r.ResponseOutputTextDelta) -> None:
        if not self._in_flight(event, event.response_id):
            return
        text = self.history.append_text(event.item_id, event.delta)
        self._emit(
            ev.AssistantText(
                item_id=event.item_id, response_id=event.response_id, delta=event.delta, text=text
            )
        )

    def _on_text_done(self, event: r.ResponseOutputTextDone) -> None:
        if not self._in_flight(event, event.response_id):
            return
        text = self.history.finish_text(event.item_id, event.text)
        self._emit(
            ev.AssistantText(
                item_id=event.item_id, response_id=event.response_id, delta="", text=text, final=True
            )
        )

    def _on_part_event(self, event: r.ResponseContentPartAdded | r.ResponseOutputAudioDone) -> None:
        self._in_flight(event, event.response_id)

    def _in_flight(self, event: Any, response_id: str | None, *, cancelling: bool = False) -> bool:
        """Whether a response-scoped event belongs to the response in the slot.

        An event without a response id is taken as the generating response's.
        With ``cancelling``, the slot's response counts while its cancel is
        pending too (its items and calls exist on the server until its
        ``response.done``). Other events of a response that was cut off
        (barge-in, cancel, stall, lost socket) are dropped silently; any other
        event of a response that is not in flight is reported and ignored: it
        must not start anything or enter the history.
        """
        phase = self._resp.state
        ours = response_id is not None and response_id == self._response_id
        if (phase == "generating" and (ours or response_id is None)) or (
            cancelling and phase == "cancelling" and ours
        ):
            self._heard = self._clock()
            return True
        if response_id is not None and response_id in self._interrupted:
            return False
        self._error(
            ErrorCode.UNEXPECTED_EVENT,
            f"{event.TYPE} for response {response_id}, which is not in flight "
            f"(phase {self._resp.state}, response {self._response_id})",
            source=ErrorSource.PROTOCOL,
        )
        return False

    # ------------------------------------------------------------------ tools

    def _on_arguments_done(self, event: r.ResponseFunctionCallArgumentsDone) -> None:
        if not event.call_id:
            self._error(
                ErrorCode.INVALID_EVENT,
                "function_call_arguments.done without call_id",
                source=ErrorSource.PROTOCOL,
            )
            return
        known = self.calls.get(event.call_id)
        if self.calls.finished(event.call_id) or (known is not None and known.started):
            self._error(
                ErrorCode.DUPLICATE_EVENT,
                f"arguments for call {event.call_id} arrived twice",
                source=ErrorSource.PROTOCOL,
            )
            return
        rid = event.response_id
        if rid is not None and rid in self._interrupted and rid != self._response_id:
            return  # its response was given up (cancel timed out, socket lost): its calls are settled
        announced = known is not None or self.calls.hinted(event.call_id)
        if not (announced or self._in_flight(event, rid, cancelling=True)):
            return  # a call the server never made: no announced item, no response in flight
        self.calls.track(
            event.call_id,
            name=event.name,
            arguments=event.arguments,
            response_id=rid or self._response_id,
            item_id=event.item_id,
        )
        self._start(event.call_id)
