"""The tool-call ledger: every function call the model makes gets exactly one output.

A call becomes known when its ``function_call`` item appears
(``response.output_item.added`` / ``conversation.item.added``), becomes
runnable when its arguments are complete, and is closed by exactly one
``function_call_output``. The ledger is what the ``awaiting_tool`` state and
its guard read; it never sends anything itself.
"""

from __future__ import annotations

import attrs


@attrs.define
class Call:
    """One function call, from announcement to answer."""

    call_id: str
    name: str | None = None
    arguments: str | None = None
    response_id: str | None = None
    item_id: str | None = None
    started: bool = False
    answered: bool = False


class CallLedger:
    """Function calls by ``call_id``, in the order they were announced."""

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}
        self._finished: dict[str, None] = {}  # answered and forgotten (the newest few): never run again
        self._hints: dict[str, tuple[str | None, str | None]] = {}  # call id -> (name, item id)

    def get(self, call_id: str) -> Call | None:
        """The call with this id, if known."""
        return self._calls.get(call_id)

    def finished(self, call_id: str) -> bool:
        """True for a call that was answered (even if since forgotten)."""
        call = self._calls.get(call_id)
        return call_id in self._finished or (call is not None and call.answered)

    def hinted(self, call_id: str) -> bool:
        """True for a call a conversation echo announced that is not tracked yet."""
        return call_id in self._hints

    def hint(self, call_id: str, *, name: str | None, item_id: str | None) -> None:
        """Remember what a conversation echo says about a call, without opening it.

        ``conversation.item.added`` also echoes calls we restored ourselves, so it
        must not create work; a model call is opened by its response's events.
        """
        if call_id in self._calls:
            self.track(call_id, name=name, item_id=item_id)
            return
        if len(self._hints) >= 256:
            self._hints.pop(next(iter(self._hints)))
        self._hints[call_id] = (name, item_id)

    def track(
        self,
        call_id: str,
        *,
        name: str | None = None,
        arguments: str | None = None,
        response_id: str | None = None,
        item_id: str | None = None,
    ) -> Call:
        """Record what an event says about a call, keeping what is already known."""
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = Call(call_id)
            hint_name, hint_item = self._hints.pop(call_id, (None, None))
            name, item_id = name or hint_name, item_id or hint_item
        call.name = call.name or name
        call.arguments = arguments if arguments is not None else call.arguments
        call.response_id = call.response_id or response_id
        call.item_id = call.item_id or item_id
        return call

    def open(self) -> list[Call]:
        """Calls that still need their output."""
        return [c for c in self._calls.values() if not c.answered]

    def running(self, response_id: str | None = None) -> list[Call]:
        """Started, unanswered calls (of one response, when given)."""
        return [
            c
            for c in self._calls.values()
            if c.started and not c.answered and (response_id is None or c.response_id == response_id)
        ]

    def of_response(self, response_id: str | None) -> list[Call]:
        """Unanswered calls a response announced."""
        return [c for c in self._calls.values() if c.response_id == response_id and not c.answered]

    def abandon_incomplete(self) -> list[Call]:
        """Drop calls whose arguments never completed (their socket is gone); return them."""
        gone = [c for c in self._calls.values() if not c.started and not c.answered and c.arguments is None]
        for call in gone:
            del self._calls[call.call_id]
        return gone

    def forget_answered(self) -> None:
        """Drop answered calls (they live on in the history mirror); remember their ids."""
        for call_id, call in self._calls.items():
            if call.answered:
                self._finished[call_id] = None
        while len(self._finished) > 256:  # a duplicate from that far back is not a duplicate
            del self._finished[next(iter(self._finished))]
        self._calls = {k: c for k, c in self._calls.items() if not c.answered}
