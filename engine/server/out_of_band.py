"""The local server's out-of-band responses: ``response.create`` with ``conversation: "none"``.

Such a response is a second stream beside the default conversation's one: it
may start while that one is active (no ``conversation_already_has_active_response``),
its events interleave with it, it adds nothing to the conversation (the plan's
``conversation_id`` is ``None``, so no ``conversation.item.*`` event is planned),
and a barge-in or ``response.cancel`` of the in-band response leaves it alone.
``metadata`` is echoed on its ``response.created`` and ``response.done``
(docs/protocol.md §7.1).

Its answer is deterministic, for tests: ``Aside: <question> (<n> items in
context)``, where the question is the last user message of an explicit
``input``, or else the last paragraph of the response's ``instructions``, and
``n`` counts the items the response saw (the conversation's when ``input`` is
left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.protocol.client import ResponseParams
from engine.protocol.codec import ServerEvent
from engine.protocol.items import Item
from engine.server.assistant import Reply, Say, decide
from engine.server.responder import ResponseStream


def out_of_band(params: ResponseParams | None) -> bool:
    """True for a response that is not added to the default conversation."""
    return params is not None and params.conversation == "none"


def reply_for(
    params: ResponseParams, context: Sequence[Item], tools: Sequence[Mapping[str, Any]], tool_choice: Any
) -> Reply:
    """The assistant's reply: an aside for an out-of-band response, else :func:`decide`'s."""
    if not out_of_band(params):
        return decide(context, tools, tool_choice)
    question = ""
    if params.input is not None and context and context[-1].role == "user":
        question = " ".join(part.text or "" for part in context[-1].content or ()).strip()
    elif params.instructions:
        question = params.instructions.strip().split("\n\n")[-1].strip()
    return Say(text=f"Aside: {question} ({len(context)} items in context)")


class Asides:
    """The out-of-band responses in progress, released as time passes."""

    def __init__(self) -> None:
        self._streams: list[ResponseStream] = []

    def keep(self, stream: ResponseStream, current: ResponseStream | None) -> ResponseStream | None:
        """The default conversation's response after ``stream`` starts.

        An out-of-band ``stream`` is kept here and ``current`` stays; any other becomes it.
        """
        if stream.plan.conversation_id is not None:
            return stream
        self._streams.append(stream)
        return current

    def due(self, now: float) -> list[ServerEvent]:
        """Every event of every out-of-band response due at ``now``."""
        if not self._streams:
            return []
        out = [event for stream in self._streams for event in stream.due(now)]
        self._streams = [stream for stream in self._streams if not stream.finished]
        return out

    def next_due(self) -> float | None:
        """When the next out-of-band event is due (``None``: none in progress)."""
        return min((t for s in self._streams if (t := s.next_due()) is not None), default=None)
