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

    def get(self, call_id: str) -> Call | None:
        """The call with this id, if known."""
        return self._calls.get(call_id)

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

    def all(self) -> list[Call]:
        """Every call, answered or not."""
        return list(self._calls.values())

    def abandon_incomplete(self) -> list[Call]:
        """Drop calls whose arguments never completed (their socket is gone); return them."""
        gone = [c for c in self._calls.values() if not c.started and not c.answered and c.arguments is None]
        for call in gone:
            del self._calls[call.call_id]
        return gone

    def forget_answered(self) -> None:
        """Drop answered calls (they live on in the history mirror)."""
        self._calls = {k: c for k, c in self._calls.items() if not c.answered}
