"""Barge-in: cut the assistant off where the user stopped hearing it.

When the user cuts in (server VAD's ``speech_started`` during a response, or
``interrupt()``), the application hears :class:`~engine.core.events.Interrupted`
at once, queued audio of that response is dropped, later deltas of it are
discarded, and what was not heard is cut from the server's conversation and
the local mirror, by the playback ledger's account (:mod:`engine.core.playback`).
``response.cancel`` is sent only if the server will not cancel by itself. A
dropped socket cuts the mirror the same way (the server's copy is gone).
Protocol facts: docs/protocol.md §6.4 and §8; why: docs/peers.md §2.2.
"""

from __future__ import annotations

from engine.core import events as ev
from engine.core.effects import CancelTools, DropAudioOut
from engine.core.playback import Cut
from engine.core.slot import ResponseSlot
from engine.core.states import Phase
from engine.protocol import client as c


class BargeIn(ResponseSlot):
    """Interrupting the assistant, and cutting what was not heard."""

    def _barge_in(self, *, server_cancels: bool | None = None) -> None:
        """The user cut in: report it, drop queued audio, truncate what was not heard, cancel.

        ``server_cancels`` defaults to the configuration (server VAD's ``interrupt_response``).
        """
        if server_cancels is None:
            server_cancels = self.config.server_interrupts_response
        self._owe("drop")
        now = self._clock()
        active = self.phase in (Phase.REQUESTED, Phase.SERVER_OWED, Phase.GENERATING)
        target = (
            self._response_id if active else (self._audio_responses[-1] if self._audio_responses else None)
        )
        cuts = self.ledger.cuts(target, now) if active or target is not None else []
        if active or cuts:  # a response in flight, or one whose audio is still playing
            self._interrupted_at(target, cuts)
            if active:
                self._cancel(send=not server_cancels)
            for cut in cuts:
                self._cut(cut.item_id, cut.played_ms, cut.received_ms)
            self.ledger.forget(target)
        running = tuple(call.call_id for call in self.calls.running(self._response_id))
        if running:
            self._out.append(CancelTools(call_ids=running, reason="interrupted"))

    def _interrupted_at(self, response_id: str | None, cuts: list[Cut]) -> None:
        first = cuts[0] if cuts else None
        self._emit(
            ev.Interrupted(
                item_id=first.item_id if first else None,
                response_id=response_id,
                played_ms=first.played_ms if first else 0,
            )
        )
        self._out.append(DropAudioOut(response_id=response_id))

    def _cut(self, item_id: str, played_ms: int, received_ms: int) -> None:
        """Make the server and the mirror forget what the user did not hear."""
        if self.options.supports_truncation:
            if played_ms <= 0:
                self._send(c.ConversationItemDelete(item_id=item_id))
            else:
                self._send(
                    c.ConversationItemTruncate(item_id=item_id, content_index=0, audio_end_ms=played_ms)
                )
        self._cut_mirror(item_id, played_ms, received_ms)

    def _cut_mirror(self, item_id: str, played_ms: int, received_ms: int) -> None:
        if played_ms <= 0:
            self.history.remove(item_id)
        else:
            self.history.cut_heard(item_id, played_ms / received_ms)

    def _cut_on_drop(self) -> None:
        """The socket dropped mid-response: cut the answer where the user stopped hearing it.

        Only the mirror is cut: the server conversation is gone with the socket.
        """
        rid = self._response_id
        cuts = self.ledger.cuts(rid, self._clock())
        self._interrupted.add(rid)
        self._interrupted_at(rid, cuts)
        for cut in cuts:
            self._cut_mirror(cut.item_id, cut.played_ms, cut.received_ms)
        self.ledger.forget(rid)
