"""The socket's life as the core sees it: the handshake, a dropped socket, and the restore.

``session.update`` goes out on ``session.created``; the first ``session.updated``
makes the session ready, then the initial history is sent, then held audio and
commands, then a response requested early. When the socket drops, the answer
in flight is cut where the user stopped hearing it, what was transcribed of the
user's last words is kept (what was not is reported lost), and the ``owed``
machine remembers whether the turn must be resumed. On the next socket the
mirrored history is replayed on a fresh server conversation, with a note that
tells the model how to go on, and the owed response is asked for.
Protocol facts: docs/protocol.md §1.3 and §11; why: docs/peers.md §2.4.
"""

from __future__ import annotations

from engine.core import events as ev
from engine.core.bargein import BargeIn
from engine.core.effects import Effect, GateAudio
from engine.core.states import Owed, Phase, State, UserTurn
from engine.errors import ErrorCode, ErrorSource
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol.items import Item

LOST_TURN_NOTE = (
    "The connection was interrupted and the user's last words were lost before they were heard. "
    "Briefly ask the user to repeat; do not greet them again."
)
RESUME_NOTE = (
    "The connection was interrupted briefly. Continue the conversation from where it stopped; "
    "do not greet the user again."
)


class Restore(BargeIn):
    """The handshake, the drop and the restore."""

    def _connection_lost(self) -> list[Effect]:
        """The socket dropped: hold audio, end the in-flight response, prepare the restore.

        Tools keep running; their outputs join the mirrored history, which is
        replayed on the next socket, so each call is answered there exactly once.
        """
        if self.state in (State.CLOSED, State.RECONNECTING):
            return []
        self._owe("lost")  # guard slot_busy: a turn in flight is resumed
        if self.phase is not Phase.IDLE:
            self._cut_on_drop()
        self._fire_response("reset")
        self._response_id = None
        self.turns.connection_lost(self._clock())
        self._keep_user_words()
        self.history.flush_streaming()
        for call in self.calls.abandon_incomplete():
            # Arguments never completed: the call does not exist on the next socket.
            self.history.remove(call.item_id)
        self._out.append(GateAudio(False))
        self._fire("connection_lost")
        return self._flush()

    def _slot_busy(self) -> bool:
        return self.phase is not Phase.IDLE

    def _no_open_calls(self) -> bool:
        return not self.calls.open()

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
        if lost or (self.user_turn is UserTurn.OPEN and not kept):
            self._owe("words_lost")
            self._error(
                ErrorCode.USER_TURN_LOST,
                "the user's last utterance was lost with the connection before it was transcribed",
            )
        self._step("user_turn", "settled")

    def _on_session_created(self, event: s.SessionCreated) -> None:
        if self.state not in (State.CONNECTING, State.RECONNECTING):
            message = f"session.created in state {self.state}"
            self._error(ErrorCode.UNEXPECTED_EVENT, message, source=ErrorSource.PROTOCOL)
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
        if self.owed is Owed.OWED and not self.calls.open():
            self._owe("paid")
            self._request_response()

    def _restore(self) -> None:
        """Replay the mirrored conversation on a fresh server conversation."""
        self.turns.connection_restored(self._clock())
        self.history.prune_empty()  # messages with nothing in them cannot be restored
        self._interrupted.clear()  # the old socket's responses cannot send anything more
        self._user_text.clear()
        for item in self.history.restorable():
            self._send(c.ConversationItemCreate(item=item))
        self._owe("restored")  # with no call open: a note, then the response is owed

    def _add_resume_note(self) -> None:
        self._add_note(RESUME_NOTE)

    def _add_lost_turn_note(self) -> None:
        self._add_note(LOST_TURN_NOTE)

    def _add_note(self, note: str) -> None:
        self._send(c.ConversationItemCreate(item=Item.system_text(note, id=self._new_id("item"))))
