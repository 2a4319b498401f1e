"""The conversation core: server events and user commands in, effects out.

Pure and synchronous (sans-IO): no sockets, no tasks, no sleeping, and no
clock but the one passed in. Each public method returns the list of effects the
runtime must carry out, in order. The transition rules live in
:mod:`engine.core.states`; this module holds what happens *around* each
transition (what to send, what to tell the application), plus the bookkeeping
the guards read (open tool calls, the owed response).

Rules taken from the protocol (protocol.md) and from what hurt other clients'
users (peers.md §2):

* ``session.update`` goes out on ``session.created``; the first
  ``session.updated`` makes the session ready, then the initial history is
  sent, then held audio and a response requested early are let through.
* At most one ``response.create`` is in flight; later requests are coalesced
  and sent after ``response.done``. A cancel before ``response.created`` is
  deferred until the response id is known.
* ``speech_started`` during a response is a barge-in: the application hears
  :class:`~engine.core.events.Interrupted` at once, queued audio of that
  response is dropped, later deltas of it are discarded, and
  ``response.cancel`` is sent only if the server will not cancel by itself.
* ``speech_stopped`` with ``create_response`` marks a server-handled turn, so
  no duplicate ``response.create`` is sent.
* Every function call gets exactly one output; ``awaiting_tool`` is left only
  when all are answered, then one coalesced ``response.create`` follows.
* ``response_cancel_not_active`` and ``conversation_already_has_active_response``
  are benign. Errors are fatal only when retrying cannot help: the server
  refused our credentials (``authentication_error``/``permission_error`` types,
  ``invalid_api_key``) or our configuration while connecting.
* An event that is illegal in the current state is reported as a non-fatal
  ``Error`` and otherwise ignored; the machines stay in a declared state.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from transitions import MachineError

from engine.core import events as ev
from engine.core.calls import CallLedger
from engine.core.effects import (
    ArmTimer,
    CancelTimer,
    CancelTools,
    DropAudioOut,
    Effect,
    Emit,
    GateAudio,
    Send,
    StartTool,
)
from engine.core.history import History
from engine.core.metrics import TurnClock
from engine.core.playback import PlaybackLedger
from engine.core.states import (
    CONVERSATION_TRANSITIONS,
    RESPONSE_TRANSITIONS,
    Phase,
    State,
    fire,
    plan_of,
    shared,
)
from engine.errors import UpdateRejected
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol._wire import to_wire
from engine.protocol.codec import AnyServerEvent
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item

log = logging.getLogger(__name__)

BENIGN_ERRORS = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})
FATAL_ERROR_TYPES = frozenset({"authentication_error", "permission_error"})
FATAL_ERROR_CODES = frozenset({"invalid_api_key", "insufficient_quota"})
# session_expired is not fatal: the server's session ended, not the call (the session rolls over).

LOST_TURN_NOTE = (
    "The connection was interrupted and the user's last words were lost before they were heard. "
    "Briefly ask the user to repeat; do not greet them again."
)
RESUME_NOTE = (
    "The connection was interrupted briefly. Continue the conversation from where it stopped; "
    "do not greet the user again."
)
RESPONSE_TIMER = "response_created"
STALL_TIMER = "response_stall"
CANCEL_TIMER = "response_cancel"
RETRY_TIMER = "retry_response"


def _require(command: str, name: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
    """Refuse an argument of the wrong type at the call, before anything changes."""
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise TypeError(f"{command}(): {name} must be {expected}, got {type(value).__name__}")


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _require_sendable(command: str, what: str, event: c.ClientEvent) -> None:
    """Refuse, at the call, a client event that cannot be written as JSON (wrong field types, NaN)."""
    try:
        json.dumps(to_wire(event), allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"{command}(): {what} cannot be sent: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{command}(): {what} cannot be sent: {exc}") from None


@attrs.frozen(kw_only=True)
class CoreOptions:
    """Provider facts and limits the core needs.

    Attributes:
        response_created_timeout: seconds to wait for ``response.created`` after
            ``response.create`` before giving the slot up and reporting it.
        stall_timeout: seconds a generating response may send nothing before it
            is cancelled and reported; ``None`` waits forever.
        cancel_timeout: seconds to wait for ``response.done`` after a cancel
            before freeing the slot as if it had come (and reporting it).
        voice_locked_after_audio: the server rejects a voice change once audio
            was produced (OpenAI GA); refuse it locally instead.
        server_continues_after_tools: the server starts the follow-up response
            itself after tool outputs (Inworld's ``auto_tool_response``).
        max_history_items: items kept in the local mirror (and replayed on a restore);
            ``None`` keeps everything.
        supports_truncation: the server has ``conversation.item.truncate`` (and delete);
            without it a barge-in still cuts the local transcript but sends nothing.
        id_prefix: prefix of client-generated item and event ids.
    """

    response_created_timeout: float = 10.0
    stall_timeout: float | None = 30.0
    cancel_timeout: float = 5.0
    voice_locked_after_audio: bool = True
    server_continues_after_tools: bool = False
    supports_truncation: bool = True
    max_history_items: int | None = 500
    id_prefix: str = "e"


class _Slot:
    """A bare model for one ``transitions`` machine (it sets ``state`` and triggers)."""

    state: str


class Conversation:
    """One realtime conversation's protocol state. See the module docstring."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        clock: Callable[[], float],
        history: Sequence[Item] = (),
        options: CoreOptions = CoreOptions(),
    ) -> None:
        self.config = config
        self.options = options
        self._clock = clock
        self._conv = _Slot()
        self._resp = _Slot()
        self._conv.state = State.CONNECTING.value
        self._resp.state = Phase.IDLE.value
        # The shared transitions machines, read once into lookup plans (see states.plan_of).
        self._conv_plan = plan_of(shared(State, CONVERSATION_TRANSITIONS, State.CONNECTING))
        self._resp_plan = plan_of(shared(Phase, RESPONSE_TRANSITIONS, Phase.IDLE))
        for name in ("server_will_respond", "has_open_calls"):
            setattr(self._conv, name, getattr(self, f"_{name}"))
        self.history = History(history, max_items=options.max_history_items)
        self.calls = CallLedger()
        self._initial: list[Item] = list(history)
        self._held: list[c.ClientEvent] = []  # client events asked for before readiness
        self._owed = False  # a response.create is owed once the slot frees
        self._tool_followup = False  # tool outputs were sent and need a response
        self._response_id: str | None = None
        self._create_event_id: str | None = None
        self._interrupted: set[str | None] = set()
        self._audio_produced = False
        self._resume = False  # a restore must ask the model to go on
        self._lost_user_turn = False  # a user utterance went down with the socket
        self._user_turn_open = False  # server VAD heard speech whose transcript is not final yet
        self._request_origin = "client"  # who asked for the response in the slot (or "server_tools")
        self._heard = 0.0  # when the generating response last sent an event (the stall deadline)
        self._timers: set[str] = set()  # the stall and cancel deadlines that are armed
        self.ledger = PlaybackLedger(config.output_format.bytes_per_second / 1000)
        self._audio_responses: list[str | None] = []  # recent responses with audio, oldest first
        self.turns = TurnClock()
        self._announced: dict[str | None, None] = {}  # the newest item ids told to the app
        self._user_text: dict[str | None, str] = {}
        self._counter = 0
        self._out: list[Effect] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            s.SessionCreated: self._on_session_created,
            s.SessionUpdated: self._on_session_updated,
            s.Error: self._on_error,
            s.ConversationItemAdded: self._on_item_added,
            s.ConversationItemCreated: self._on_item_added,
            s.ConversationItemDone: self._on_item_done,
            s.ConversationItemDeleted: self._on_item_deleted,
            s.ConversationItemTruncated: self._on_item_truncated,
            s.SpeechStarted: self._on_speech_started,
            s.SpeechStopped: self._on_speech_stopped,
            s.InputAudioTranscriptionDelta: self._on_transcription_delta,
            s.InputAudioTranscriptionCompleted: self._on_transcription_completed,
            s.InputAudioTranscriptionFailed: self._on_transcription_failed,
            r.ResponseCreated: self._on_response_created,
            r.ResponseDone: self._on_response_done,
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
        }

    # ------------------------------------------------------------------ inspection

    @property
    def state(self) -> State:
        """Whose turn it is."""
        return State(self._conv.state)

    @property
    def phase(self) -> Phase:
        """Where the response slot stands."""
        return Phase(self._resp.state)

    @property
    def response_id(self) -> str | None:
        """The id of the response in the slot, once the server has named it."""
        return self._response_id

    # ------------------------------------------------------------------ inputs

    def receive(self, event: AnyServerEvent) -> list[Effect]:
        """Feed one decoded server event."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return []  # ping, rate limits, content parts, unmodelled events: nothing to do
        if self._conv.state == "closed":
            return []
        handler(event)
        out, self._out = self._out, []
        return out

    def protocol_error(self, message: str, code: str = "protocol_error") -> list[Effect]:
        """Report a server message that could not be decoded; the conversation goes on."""
        self._error(code, message, source="protocol")
        return self._flush()

    def connection_opened(self) -> list[Effect]:
        """A socket is up; wait for ``session.created``."""
        return self._flush()

    def audio_played(self, item_id: str, ms: float) -> list[Effect]:
        """The application's speaker has played ``ms`` of item ``item_id`` (cumulative)."""
        _require("audio_played", "item_id", item_id, str, "a str")
        _require("audio_played", "ms", ms, (int, float), "a number of milliseconds")
        if not (math.isfinite(ms) and ms >= 0):
            raise ValueError(f"audio_played(): ms must be finite and not negative, got {ms!r}")
        if self.ledger.played(item_id, ms) and ms > 0:
            # Only audio of this turn counts (the tail of an earlier answer may still be playing).
            started = self.ledger.first_delta_at(self.ledger.response_of(item_id))
            received = self.turns.get("first_audio_received")
            if started is not None and received is not None and started >= received:
                self.turns.mark("first_audio_played", self._clock())
        return self._flush()

    def _refuse_closed(self, command: str) -> bool:
        if self.state is not State.CLOSED:
            return False
        self._error("session_closed", f"{command}() after the session closed", source="local")
        return True

    def send_text(self, text: str) -> list[Effect]:
        """Add a user text message and ask for a response to it."""
        _require("send_text", "text", text, str, "a str")
        if self._refuse_closed("send_text"):
            return self._flush()
        item = Item.user_text(text, id=self._new_id("item"))
        self._send_or_hold(c.ConversationItemCreate(item=item))
        self.history.add(item)
        self._request_response()
        return self._flush()

    def add_item(self, item: Item) -> list[Effect]:
        """Add any conversation item without asking for a response."""
        _require("add_item", "item", item, Item, "an engine.protocol.items.Item")
        _require_sendable("add_item", "the item", c.ConversationItemCreate(item=item))
        if self._refuse_closed("add_item"):
            return self._flush()
        if item.id is None:
            item = attrs.evolve(item, id=self._new_id("item"))
        self._send_or_hold(c.ConversationItemCreate(item=item))
        self.history.add(item)
        return self._flush()

    def create_response(self, params: c.ResponseParams | None = None) -> list[Effect]:
        """Ask for a response; coalesced with any already in flight."""
        if params is not None:
            _require("create_response", "params", params, c.ResponseParams, "a ResponseParams or None")
            _require_sendable("create_response", "the params", c.ResponseCreate(response=params))
        self._request_response(params)
        return self._flush()

    def cancel_response(self) -> list[Effect]:
        """Cancel the response in flight (deferred until it has an id). No-op when idle."""
        if self._refuse_closed("cancel_response"):
            return self._flush()
        self._owed = False
        self._cancel(send=True)
        return self._flush()

    def interrupt(self) -> list[Effect]:
        """Cut the assistant off now, as a barge-in would, and cancel its response."""
        if self._refuse_closed("interrupt"):
            return self._flush()
        self._barge_in(server_cancels=False)
        return self._flush()

    def commit_audio(self) -> list[Effect]:
        """Commit the input buffer as a user turn (manual turns)."""
        if self._refuse_closed("commit_audio"):
            return self._flush()
        self._send_or_hold(c.InputAudioBufferCommit())
        return self._flush()

    def clear_audio(self) -> list[Effect]:
        """Discard the server's uncommitted input audio."""
        if self._refuse_closed("clear_audio"):
            return self._flush()
        self._send_or_hold(c.InputAudioBufferClear())
        return self._flush()

    def update(self, config: SessionConfig) -> list[Effect]:
        """Send a new configuration. Raises :class:`UpdateRejected` if the server would refuse it."""
        _require("update", "config", config, SessionConfig, "a SessionConfig")
        if self._refuse_closed("update"):
            return self._flush()
        if (
            self.options.voice_locked_after_audio
            and self._audio_produced
            and config.voice != self.config.voice
        ):
            raise UpdateRejected(
                f"cannot change the voice from {self.config.voice!r} to {config.voice!r}: "
                "the server refuses a voice change once assistant audio exists"
            )
        self.config = config
        if self.state not in (State.CONNECTING, State.RECONNECTING, State.CLOSED):
            self._send(c.SessionUpdate(session=config.to_wire()))
        return self._flush()

    def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> list[Effect]:
        """Answer a call exactly once; the follow-up response is coalesced."""
        _require("tool_result", "call_id", call_id, str, "a str")
        _require("tool_result", "output", output, str, "a str (the JSON text of the result)")
        _require("tool_result", "is_error", is_error, bool, "a bool")
        if self._refuse_closed("tool_result"):
            return self._flush()
        call = self.calls.get(call_id)
        if call is None or call.answered:
            why = "unknown call" if call is None else "call already answered"
            self._error("duplicate_tool_output", f"output for {call_id!r} dropped: {why}", source="local")
            return self._flush()
        self._answer(call_id, output, is_error=is_error)
        self._maybe_continue_after_tools()
        return self._flush()

    def timer_fired(self, name: str) -> list[Effect]:
        """A timer armed by an ``ArmTimer`` effect expired."""
        self._timers.discard(name)
        waiting = self.phase is Phase.REQUESTED or (
            self.phase is Phase.CANCELLING and self._response_id is None
        )
        if name == RESPONSE_TIMER and waiting:
            self._fire_response("created_timeout")
            self._error(
                "response_timeout",
                f"no response.created within {self.options.response_created_timeout}s",
                source="server",
            )
            if self._request_origin == "server_tools" and self.phase is Phase.IDLE:
                self._owed = True  # the server did not continue after the tools: ask ourselves
            self._after_slot_freed()
        elif name == STALL_TIMER and self.phase is Phase.GENERATING:
            self._check_stall()
        elif name == CANCEL_TIMER and self.phase is Phase.CANCELLING and self._response_id is not None:
            rid = self._response_id
            self._fire_response("cancel_timeout")
            self._response_id = None  # stays in _interrupted: whatever it still sends is dropped
            self._error(
                "cancel_timeout",
                f"no response.done for the cancelled response {rid} within "
                f"{self.options.cancel_timeout}s; the slot is free again",
                source="server",
            )
            self._settle_calls(rid)
            self._after_slot_freed()
        elif name == RETRY_TIMER and self.phase is Phase.IDLE and self._owed:
            self._owed = False
            self._request_response()
        return self._flush()

    def connection_lost(self) -> list[Effect]:
        """The socket dropped: hold audio, end the in-flight response, prepare the restore.

        Tools keep running; their outputs join the mirrored history, which is
        replayed on the next socket, so each call is answered there exactly once.
        """
        if self.state in (State.CLOSED, State.RECONNECTING):
            return []
        self._resume = self.phase is not Phase.IDLE or self._owed or self._tool_followup
        if self.phase is not Phase.IDLE:
            # The answer in flight is cut where the user stopped hearing it, as at a barge-in;
            # only the mirror is cut (the server conversation is gone with the socket).
            rid = self._response_id
            cuts = self.ledger.cuts(rid, self._clock())
            self._interrupted.add(rid)
            self._emit(
                ev.Interrupted(
                    item_id=cuts[0].item_id if cuts else None,
                    response_id=rid,
                    played_ms=cuts[0].played_ms if cuts else 0,
                )
            )
            self._out.append(DropAudioOut(response_id=rid))
            for cut in cuts:
                if cut.played_ms <= 0:
                    self.history.remove(cut.item_id)
                else:
                    self.history.cut_heard(cut.item_id, cut.played_ms / cut.received_ms)
            self.ledger.forget(rid)
        self._fire_response("reset")
        self._response_id = None
        self._owed = False
        self.turns.connection_lost(self._clock())
        self._keep_user_words()
        self.history.flush_streaming()
        for call in self.calls.abandon_incomplete():
            # Arguments never completed: the call does not exist on the next socket.
            self.history.remove(call.item_id)
        self._out.append(CancelTimer(name=RESPONSE_TIMER))
        self._disarm(STALL_TIMER, CANCEL_TIMER)
        self._out.append(GateAudio(False))
        self._fire("connection_lost")
        return self._flush()

    def _keep_user_words(self) -> None:
        """On a drop, keep what was transcribed of the user's last turn; report what was lost."""
        kept = False
        for item_id, text in self._user_text.items():
            if text.strip():
                self.history.set_transcript(item_id, text.strip())  # the interim words beat none
                kept = True
        self._user_text.clear()
        lost = self.history.unheard_user_audio()
        for item_id in lost:
            self.history.remove(item_id)
        # Speech the server heard but had not transcribed (or even committed) is gone too.
        if lost or (self._user_turn_open and not kept):
            self._user_turn_open = False
            self._lost_user_turn = True
            self._resume = True
            self._error(
                "user_turn_lost",
                "the user's last utterance was lost with the connection before it was transcribed",
            )

    def close(self) -> list[Effect]:
        """End the conversation; running tools are cancelled."""
        if self.state is State.CLOSED:
            return []
        running = tuple(call.call_id for call in self.calls.running())
        if running:
            self._out.append(CancelTools(call_ids=running, reason="closed"))
        self._out.append(CancelTimer(name=RESPONSE_TIMER))
        self._disarm(STALL_TIMER, CANCEL_TIMER)
        self._out.append(GateAudio(False))
        self._fire("close")
        return self._flush()

    # ------------------------------------------------------------------ session

    def _on_session_created(self, event: s.SessionCreated) -> None:
        if self.state not in (State.CONNECTING, State.RECONNECTING):
            self._error("unexpected_event", f"session.created in state {self.state}", source="protocol")
            return
        self._send(c.SessionUpdate(session=self.config.to_wire(), event_id=self._new_id("evt_session")))

    def _on_session_updated(self, event: s.SessionUpdated) -> None:
        # The server's effective config goes to the application; it is not kept (memory per session).
        effective = event.session or {}
        if self.state is State.CONNECTING:
            self._fire("ready")
            self._emit(ev.SessionReady(session=effective))
            for item in self._initial:
                self._send(c.ConversationItemCreate(item=item))
            self._initial = []
            # Held audio goes before held commands: a commit asked for early commits that audio.
            self._out.append(GateAudio(True))
            held, self._held = self._held, []
            for event_ in held:
                self._send(event_)
        elif self.state is State.RECONNECTING:
            self._fire("ready")
            self._emit(ev.SessionReady(session=effective))
            self._initial, self._held = [], []  # both are in the mirrored history the restore replays
            self._restore()
            self._out.append(GateAudio(True))
        else:
            return
        if self._owed and not self.calls.open():
            self._owed = False
            self._request_response()

    def _restore(self) -> None:
        """Replay the mirrored conversation on a fresh server conversation."""
        self.turns.connection_restored(self._clock())
        self.history.prune_empty()  # messages with nothing in them cannot be restored
        self._interrupted.clear()  # the old socket's responses cannot send anything more
        self._user_text.clear()
        for item in self.history.restorable():
            self._send(c.ConversationItemCreate(item=item))
        if (self._resume or self._tool_followup) and not self.calls.open():
            self._resume = False
            self._tool_followup = False
            note = LOST_TURN_NOTE if self._lost_user_turn else RESUME_NOTE
            self._lost_user_turn = False
            self._send(c.ConversationItemCreate(item=Item.system_text(note, id=self._new_id("item"))))
            self._owed = True

    def _on_error(self, event: s.Error) -> None:
        detail = event.error
        code = detail.code or detail.type or "server_error"
        ours = detail.event_id is not None and detail.event_id == self._create_event_id
        if code in BENIGN_ERRORS:
            log.debug("benign server error %s: %s", code, detail.message)
            if code == "conversation_already_has_active_response" and self.phase is Phase.REQUESTED:
                # Our create was refused; try again once the other response is over.
                self._fire_response("done")
                self._owed = True
                self._out.append(ArmTimer(name=RETRY_TIMER, delay=0.5))
            elif code == "response_cancel_not_active" and self.phase is Phase.CANCELLING:
                self._fire_response("done")
                self._disarm(CANCEL_TIMER)
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
            self._out.append(CancelTimer(name=RESPONSE_TIMER))
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

    def _on_speech_started(self, event: s.SpeechStarted) -> None:
        self._emit(ev.SpeechStarted(item_id=event.item_id, audio_start_ms=event.audio_start_ms))
        if self.config.turn_detection is None:
            return  # Inworld fires VAD events in manual mode too; the app owns turns.
        self._user_turn_open = True
        self._barge_in(server_cancels=self.config.server_interrupts_response)
        self._fire("user_started")

    def _on_speech_stopped(self, event: s.SpeechStopped) -> None:
        self._emit(ev.SpeechStopped(item_id=event.item_id, audio_end_ms=event.audio_end_ms))
        self.turns.mark("user_speech_ended", self._clock())
        if self.config.turn_detection is None:
            return
        if not (self._fire("user_stopped") and self._server_will_respond()):
            return
        if self.phase is Phase.IDLE:
            # A server-handled turn: the server sends response.created by itself.
            self._request_origin = "server"
            self._fire_response("request")
            self._out.append(ArmTimer(name=RESPONSE_TIMER, delay=self.options.response_created_timeout))
        elif not self.config.server_interrupts_response:
            # The server still has the old response (it does not cancel by itself), so it will
            # not answer this turn; ask once that response is over.
            self._owed = True

    def _on_transcription_delta(self, event: s.InputAudioTranscriptionDelta) -> None:
        text = self._user_text.get(event.item_id, "") + event.delta
        self._user_text[event.item_id] = text
        self._emit(ev.UserTranscript(item_id=event.item_id, text=text, final=False, delta=event.delta))

    def _on_transcription_completed(self, event: s.InputAudioTranscriptionCompleted) -> None:
        self._user_text.pop(event.item_id, None)
        self._user_turn_open = False
        text = event.transcript.strip()
        self.history.set_transcript(event.item_id, text)
        if text:
            self._emit(ev.UserTranscript(item_id=event.item_id, text=text, final=True))

    def _on_transcription_failed(self, event: s.InputAudioTranscriptionFailed) -> None:
        self._user_text.pop(event.item_id, None)
        self._user_turn_open = False
        message = event.error.message if event.error else "transcription failed"
        self._error("transcription_failed", f"item {event.item_id}: {message}")

    # ------------------------------------------------------------------ responses

    def _on_response_created(self, event: r.ResponseCreated) -> None:
        rid = event.response.id
        cancelling = self.phase is Phase.CANCELLING
        if self.phase is Phase.GENERATING:
            self._error("unexpected_event", f"response.created for {rid} while {self._response_id} is active")
            self._response_id = rid
            return
        self._out.append(CancelTimer(name=RESPONSE_TIMER))
        self._fire_response("created")
        self._response_id = rid
        self._tool_followup = False  # this response sees every output sent so far
        self._user_turn_open = False  # the server has the user's item now (it is in the mirror)
        self.turns.mark("response_created", self._clock())
        self._emit(ev.ResponseStarted(response_id=rid))
        if cancelling:
            # The deferred cancel: now the id is known (peers.md §2, item 2).
            self._interrupted.add(rid)
            self._send(c.ResponseCancel(response_id=rid))
            self._arm(CANCEL_TIMER, self.options.cancel_timeout)
            return
        self._heard = self._clock()
        if self.options.stall_timeout is not None:
            self._arm(STALL_TIMER, self.options.stall_timeout)
        if self.state is not State.RESPONDING:
            self._fire("respond")

    def _on_response_done(self, event: r.ResponseDone) -> None:
        response = event.response
        if response.id in self._interrupted and response.id != self._response_id:
            # A response given up after its cancel went unanswered: nothing of it counts now.
            self._interrupted.discard(response.id)
            return
        if self.phase is Phase.IDLE:
            self._error("unexpected_event", f"response.done for {response.id}, which is not active")
            return
        self._fire_response("done")
        self._out.append(CancelTimer(name=RESPONSE_TIMER))
        self._disarm(STALL_TIMER, CANCEL_TIMER)
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
            self._error(str(code or "response_failed"), str(message or response.status_details))
        self.turns.add_usage(event.effective_usage)
        self._settle_calls(response.id)
        self._after_slot_freed()
        if self._resp.state == Phase.IDLE and not self.calls.open():  # the turn is over
            self._emit(ev.TurnMetrics(**self.turns.finish(response.id, self._clock())))

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

    def _after_slot_freed(self) -> None:
        """The slot is idle: run tools, send what is owed, or hand the floor back."""
        if self.calls.open():
            if self.state is State.RESPONDING:
                self._fire("response_finished")
            return
        if self._tool_followup and self.state is not State.USER_SPEAKING:
            self._continue_after_tools()
            return
        if self._owed:
            self._owed = False
            self._request_response()
            return
        if self.state is State.RESPONDING:
            self._fire("response_finished")

    def _on_audio_delta(self, event: r.ResponseOutputAudioDelta) -> None:
        # Most server events are this one: locals and one Emit, nothing else.
        rid = event.response_id
        if rid in self._interrupted:
            return  # the response was cut off; its late audio must not play
        try:
            pcm = binascii.a2b_base64(event.delta, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            self._error(
                "invalid_audio",
                f"audio delta for item {event.item_id} is not base64: {exc}",
                source="protocol",
            )
            return
        if (rid != self._response_id or self._resp.state != "generating") and not self._in_flight(event, rid):
            return
        self._audio_produced = True
        now = self._heard = self._clock()
        ledger = self.ledger
        if not ledger.has_audio(rid):
            self.turns.mark("first_audio_received", now)
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
            "unexpected_event",
            f"{event.TYPE} for response {response_id}, which is not in flight "
            f"(phase {self._resp.state}, response {self._response_id})",
            source="protocol",
        )
        return False

    # ------------------------------------------------------------------ tools

    def _on_arguments_done(self, event: r.ResponseFunctionCallArgumentsDone) -> None:
        if not event.call_id:
            self._error("invalid_event", "function_call_arguments.done without call_id", source="protocol")
            return
        known = self.calls.get(event.call_id)
        if self.calls.finished(event.call_id) or (known is not None and known.started):
            self._error(
                "duplicate_event", f"arguments for call {event.call_id} arrived twice", source="protocol"
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
        self._tool_followup = True

    def _maybe_continue_after_tools(self) -> None:
        if self.calls.open() or self.phase is not Phase.IDLE:
            return  # more answers to come, or response.done will get here
        if self.state in (State.AWAITING_TOOL, State.SESSION_READY, State.RESPONDING):
            self._continue_after_tools()

    def _continue_after_tools(self) -> None:
        # The follow-up response also answers any request made while the tools ran.
        self._tool_followup = False
        self._owed = False
        self.calls.forget_answered()
        if self.options.server_continues_after_tools:
            self._request_origin = "server_tools"
            self._fire_response("request")  # expected from the server, not sent
            self._out.append(ArmTimer(name=RESPONSE_TIMER, delay=self.options.response_created_timeout))
            self._fire("tools_answered")
        else:
            self._request_response()

    # ------------------------------------------------------------------ response slot

    def _request_response(self, params: c.ResponseParams | None = None) -> None:
        if self.state is State.CLOSED:
            self._error("session_closed", "response requested after close", source="local")
            return
        if (
            self.state in (State.CONNECTING, State.RECONNECTING)
            or self.phase is not Phase.IDLE
            or self.calls.open()
        ):
            self._owed = True  # coalesced: sent when the slot frees (and tools are answered)
            return
        event_id = self._new_id("evt_resp")
        self._create_event_id = event_id
        self._send(c.ResponseCreate(response=params, event_id=event_id))
        self._request_origin = "client"
        self.turns.mark("response_requested", self._clock())
        self._fire_response("request")
        self._out.append(ArmTimer(name=RESPONSE_TIMER, delay=self.options.response_created_timeout))
        self._fire("respond")

    def _cancel(self, *, send: bool) -> bool:
        """Move the slot to cancelling; send ``response.cancel`` once the id is known."""
        phase = self.phase
        if phase is Phase.REQUESTED and self._request_origin != "client" and not send:
            # The server had not started the reply it owed; with the user talking it will not.
            self._fire_response("done")
            self._out.append(CancelTimer(name=RESPONSE_TIMER))
            return True
        if phase not in (Phase.REQUESTED, Phase.GENERATING):
            return False
        self._fire_response("cancel")
        if phase is Phase.GENERATING:
            self._interrupted.add(self._response_id)
            if send:
                self._send(c.ResponseCancel(response_id=self._response_id))
            self._disarm(STALL_TIMER)
            self._arm(CANCEL_TIMER, self.options.cancel_timeout)
        # From REQUESTED the cancel is deferred until response.created names the response;
        # the response timer still runs, so a response that never comes frees the slot.
        return True

    def _barge_in(self, *, server_cancels: bool) -> None:
        """The user cut in: report it, drop queued audio, truncate what was not heard, cancel."""
        self._owed = False
        now = self._clock()
        active = self.phase in (Phase.REQUESTED, Phase.GENERATING)
        target = (
            self._response_id if active else (self._audio_responses[-1] if self._audio_responses else None)
        )
        cuts = self.ledger.cuts(target, now) if active or target is not None else []
        if active or cuts:  # a response in flight, or one whose audio is still playing
            first = cuts[0] if cuts else None
            self._emit(
                ev.Interrupted(
                    item_id=first.item_id if first else None,
                    response_id=target,
                    played_ms=first.played_ms if first else 0,
                )
            )
            self._out.append(DropAudioOut(response_id=target))
            if active:
                self._cancel(send=not server_cancels)
            for cut in cuts:
                self._cut(cut.item_id, cut.played_ms, cut.received_ms)
            self.ledger.forget(target)
        running = tuple(call.call_id for call in self.calls.running(self._response_id))
        if running:
            self._out.append(CancelTools(call_ids=running, reason="interrupted"))

    def _cut(self, item_id: str, played_ms: int, received_ms: int) -> None:
        """Make the server and the mirror forget what the user did not hear."""
        if self.options.supports_truncation:
            if played_ms <= 0:
                self._send(c.ConversationItemDelete(item_id=item_id))
            else:
                self._send(
                    c.ConversationItemTruncate(item_id=item_id, content_index=0, audio_end_ms=played_ms)
                )
        if played_ms <= 0:
            self.history.remove(item_id)
        else:
            self.history.cut_heard(item_id, played_ms / received_ms)

    # ------------------------------------------------------------------ guards

    def _server_will_respond(self) -> bool:
        return self.config.server_creates_response

    def _has_open_calls(self) -> bool:
        return bool(self.calls.open())

    # ------------------------------------------------------------------ plumbing

    def _fire(self, trigger: str) -> bool:
        """Trigger the conversation machine; an illegal trigger is reported, not raised."""
        old = self._conv.state
        try:
            fire(self._conv_plan, self._conv, trigger)
        except MachineError:
            self._error(
                "illegal_transition", f"{trigger!r} is not allowed in state {old!r}", source="protocol"
            )
            return False
        if self._conv.state != old:
            self._emit(ev.StateChanged(old=State(old), new=State(self._conv.state)))
        return True

    def _fire_response(self, trigger: str) -> None:
        try:
            fire(self._resp_plan, self._resp, trigger)
            if self._resp.state != Phase.REQUESTED:
                self._create_event_id = None  # a late error about that create is no longer ours
        except MachineError:
            self._error(
                "illegal_transition",
                f"response {trigger!r} is not allowed in phase {self._resp.state!r}",
                source="protocol",
            )

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
            "response_stalled",
            f"response {rid} sent nothing for {stall}s; it is cancelled",
            source="server",
        )
        self._fire_response("stalled")
        self._interrupted.add(rid)
        self._send(c.ResponseCancel(response_id=rid))
        self._arm(CANCEL_TIMER, self.options.cancel_timeout)

    def _arm(self, name: str, delay: float) -> None:
        self._timers.add(name)
        self._out.append(ArmTimer(name=name, delay=delay))

    def _disarm(self, *names: str) -> None:
        for name in names:
            if name in self._timers:
                self._timers.discard(name)
                self._out.append(CancelTimer(name=name))

    def _send(self, event: c.ClientEvent) -> None:
        self._out.append(Send(event))

    def _send_or_hold(self, event: c.ClientEvent) -> None:
        if self.state is State.CONNECTING:
            self._held.append(event)  # sent right after the initial history
        elif self.state is State.RECONNECTING:
            # Items are in the mirrored history, which the restore replays; buffer
            # commands (commit, clear) concern a server buffer that is gone.
            log.debug("not sent while reconnecting: %s", event.TYPE)
        elif self.state is not State.CLOSED:
            self._send(event)

    def _emit(self, event: ev.UserEvent) -> None:
        self._out.append(Emit(event))

    def _error(self, code: str, message: str, *, fatal: bool = False, source: str = "server") -> None:
        level = logging.ERROR if fatal else logging.WARNING
        log.log(level, "%s error %s: %s", source, code, message)
        self._emit(ev.Error(code=code, message=message, fatal=fatal, source=source))

    def _new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self.options.id_prefix}{self._counter}"

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out
