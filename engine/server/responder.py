"""One response as a timed plan of server events, and how it is cut short.

A :class:`ResponseStream` is built whole when the response starts: every event
of the GA order (docs/protocol.md §6.1 steps 9-17, §6.2, §6.3) with the *media time*
at which it is due (audio delta ``k`` at ``k * 60`` ms). The session core
releases events as time passes: an event is due at ``start + offset * pace``,
so ``pace=1`` streams audio in real time, ``pace=0.5`` twice as fast and
``pace=0`` all at once. While releasing, the stream notes what it has opened
(the output item, the content part, the transcript so far), which is exactly
what :meth:`ResponseStream.cancel` must close, in the GA order of §6.4.

Events are built without ``event_id``; the core stamps ids as it sends them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.codec import ServerEvent
from engine.protocol.items import ContentPart, Item, Response, Usage
from engine.server.assistant import Call, Reply, Say
from engine.server.audio import CHUNK_MS, voice_chunk

MAX_AUDIO_MS = 9_000
"""Longest spoken answer; ~60 ms of audio per character up to this."""
TEXT_WORD_S = 0.03
"""Media time per word of a text-only answer."""


@attrs.frozen(kw_only=True)
class Plan:
    """What to say or call, and how: the inputs of :func:`plan_response`."""

    response_id: str
    item_id: str
    call_id: str
    reply: Reply
    modalities: tuple[str, ...]
    output_format: Mapping[str, Any]
    voice: Any
    conversation_id: str | None
    max_output_tokens: int | str
    metadata: Mapping[str, Any] | None
    input_tokens: int
    omit_call_name: bool = False


class ResponseStream:
    """A response in progress: its timed events, and what has been sent of them."""

    def __init__(
        self, plan: Plan, steps: list[tuple[float, ServerEvent]], started: float, pace: float
    ) -> None:
        self.plan = plan
        self.id = plan.response_id
        self._steps = steps
        self._next = 0
        self._started = started
        self._pace = max(0.0, pace)
        self.item: Item | None = None  # the open output item, as announced
        self.part: str | None = None  # "audio" or "text" while a part is open
        self.spoken = ""  # transcript or text released so far
        self.arguments = ""  # function call arguments released so far
        self._audio = "audio" in plan.modalities

    @property
    def finished(self) -> bool:
        """True once every event was released (the last one is ``response.done``)."""
        return self._next >= len(self._steps)

    def next_due(self) -> float | None:
        """When the next event is due (``None`` when finished)."""
        if self.finished:
            return None
        return self._started + self._steps[self._next][0] * self._pace

    def due(self, now: float) -> list[ServerEvent]:
        """Release every event due at ``now``."""
        out: list[ServerEvent] = []
        while not self.finished and self._started + self._steps[self._next][0] * self._pace <= now:
            event = self._steps[self._next][1]
            self._next += 1
            self._observe(event)
            out.append(event)
        return out

    def _observe(self, event: ServerEvent) -> None:
        if isinstance(event, r.ResponseOutputItemAdded):
            self.item = event.item
        elif isinstance(event, r.ResponseContentPartAdded):
            self.part = event.part.type if event.part is not None else None
        elif isinstance(event, r.ResponseOutputAudioTranscriptDelta | r.ResponseOutputTextDelta):
            self.spoken += event.delta
        elif isinstance(event, r.ResponseFunctionCallArgumentsDelta):
            self.arguments += event.delta
        elif isinstance(event, r.ResponseContentPartDone):
            self.part = None
        elif isinstance(event, r.ResponseOutputItemDone):
            self.item = None

    def cancel(self, reason: str) -> list[ServerEvent]:
        """Close what is open and end the response ``cancelled`` (docs/protocol.md §6.4)."""
        plan = self.plan
        ids: dict[str, Any] = {"response_id": self.id, "output_index": 0}
        out: list[ServerEvent] = []
        item_id = plan.item_id
        if self.part == "audio":
            out += [
                r.ResponseOutputAudioDone(item_id=item_id, content_index=0, **ids),
                r.ResponseOutputAudioTranscriptDone(
                    item_id=item_id, content_index=0, transcript=self.spoken, **ids
                ),
                r.ResponseContentPartDone(
                    item_id=item_id,
                    content_index=0,
                    part=ContentPart(type="audio", transcript=self.spoken),
                    **ids,
                ),
            ]
        elif self.part == "text":
            out += [
                r.ResponseOutputTextDone(item_id=item_id, content_index=0, text=self.spoken, **ids),
                r.ResponseContentPartDone(
                    item_id=item_id, content_index=0, part=ContentPart(type="text", text=self.spoken), **ids
                ),
            ]
        output: tuple[Item, ...] = ()
        if self.item is not None:
            item = _final_item(self.item, self.spoken, self.arguments, audio=self._audio, status="incomplete")
            output = (item,)
            out.append(r.ResponseOutputItemDone(item=item, **ids))
            if plan.conversation_id is not None:
                out.append(s.ConversationItemDone(item=item))
        details = {"type": "cancelled", "reason": reason}
        out.append(r.ResponseDoneEvent(response=_response(plan, "cancelled", output, details)))
        self._next = len(self._steps)
        self.item, self.part = None, None
        return out


def _final_item(item: Item, spoken: str, arguments: str, *, audio: bool, status: str) -> Item:
    """The item as it ends: its content (or arguments) as far as they were released."""
    if item.type == "function_call":
        return attrs.evolve(item, status=status, arguments=arguments)
    part = (
        ContentPart(type="output_audio", transcript=spoken)
        if audio
        else ContentPart(type="output_text", text=spoken)
    )
    return attrs.evolve(item, status=status, content=(part,))


def _response(
    plan: Plan,
    status: str,
    output: tuple[Item, ...],
    details: dict[str, Any] | None = None,
) -> Response:
    fmt = dict(plan.output_format)
    output_tokens = sum(len(_text_of(item)) // 4 + 1 for item in output) if status != "in_progress" else 0
    usage = (
        Usage(
            total_tokens=plan.input_tokens + output_tokens,
            input_tokens=plan.input_tokens,
            output_tokens=output_tokens,
        )
        if status != "in_progress"
        else None
    )
    return Response(
        id=plan.response_id,
        object="realtime.response",
        status=status,
        status_details=details,
        output=output,
        usage=usage,
        conversation_id=plan.conversation_id,
        output_modalities=plan.modalities,
        audio={"output": {"format": fmt, "voice": plan.voice}},
        max_output_tokens=plan.max_output_tokens,
        metadata=dict(plan.metadata) if plan.metadata is not None else None,
    )


def _text_of(item: Item) -> str:
    if item.type == "function_call":
        return item.arguments or ""
    return item.text


def _split(text: str, pieces: int) -> list[str]:
    """``text`` in up to ``pieces`` consecutive chunks (at least one, maybe empty)."""
    size = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def plan_response(plan: Plan, *, started: float, pace: float) -> ResponseStream:
    """The whole timed event sequence of one response; see the module docstring."""
    ids: dict[str, Any] = {"response_id": plan.response_id, "output_index": 0}
    part_ids: dict[str, Any] = {**ids, "item_id": plan.item_id, "content_index": 0}
    in_conversation = plan.conversation_id is not None
    steps: list[tuple[float, ServerEvent]] = [
        (0.0, r.ResponseCreated(response=_response(plan, "in_progress", ())))
    ]
    reply = plan.reply
    item = Item(
        type="message",
        id=plan.item_id,
        object="realtime.item",
        status="in_progress",
        role="assistant",
        content=(),
    )
    if isinstance(reply, Call):
        item = Item(
            type="function_call",
            id=plan.item_id,
            object="realtime.item",
            status="in_progress",
            call_id=plan.call_id,
            name=reply.name,
            arguments="",
        )
    steps.append((0.0, r.ResponseOutputItemAdded(item=item, **ids)))
    if in_conversation:
        steps.append((0.0, s.ConversationItemAdded(item=item)))
    end = 0.0
    if isinstance(reply, Call):
        call = {**ids, "item_id": plan.item_id, "call_id": plan.call_id}
        steps += [
            (0.0, r.ResponseFunctionCallArgumentsDelta(delta=c, **call)) for c in _split(reply.arguments, 3)
        ]
        steps.append(
            (
                0.0,
                r.ResponseFunctionCallArgumentsDone(
                    name=None if plan.omit_call_name else reply.name, arguments=reply.arguments, **call
                ),
            )
        )
        final = attrs.evolve(item, status="completed", arguments=reply.arguments)
    elif "audio" in plan.modalities:
        end = _plan_audio(plan, reply, part_ids, steps)
        final = _final_item(item, reply.text, "", audio=True, status="completed")
    else:
        end = _plan_text(reply, part_ids, steps)
        final = _final_item(item, reply.text, "", audio=False, status="completed")
    steps.append((end, r.ResponseOutputItemDone(item=final, **ids)))
    if in_conversation:
        steps.append((end, s.ConversationItemDone(item=final)))
    steps.append((end, r.ResponseDoneEvent(response=_response(plan, "completed", (final,)))))
    return ResponseStream(plan, steps, started, pace)


def _plan_audio(
    plan: Plan, reply: Say, part_ids: dict[str, Any], steps: list[tuple[float, ServerEvent]]
) -> float:
    """Audio deltas, ~60 ms of audio per character, with the transcript word by word between them."""
    text = reply.text
    fmt = plan.output_format
    chunk = voice_chunk(str(fmt.get("type", "audio/pcm")), int(fmt.get("rate", 8000)))
    count = max(1, min(len(text), MAX_AUDIO_MS // CHUNK_MS))
    words = re.findall(r"\S+\s*", text)
    words_per_chunk: list[list[str]] = [[] for _ in range(count)]
    for j, word in enumerate(words):
        words_per_chunk[j * count // len(words)].append(word)
    steps.append((0.0, r.ResponseContentPartAdded(part=ContentPart(type="audio", transcript=""), **part_ids)))
    for k in range(count):
        at = k * CHUNK_MS / 1000
        steps.append((at, r.ResponseOutputAudioDelta(delta=chunk, **part_ids)))
        steps += [(at, r.ResponseOutputAudioTranscriptDelta(delta=w, **part_ids)) for w in words_per_chunk[k]]
    end = (count - 1) * CHUNK_MS / 1000
    steps += [
        (end, r.ResponseOutputAudioDone(**part_ids)),
        (end, r.ResponseOutputAudioTranscriptDone(transcript=text, **part_ids)),
        (end, r.ResponseContentPartDone(part=ContentPart(type="audio", transcript=text), **part_ids)),
    ]
    return end


def _plan_text(reply: Say, part_ids: dict[str, Any], steps: list[tuple[float, ServerEvent]]) -> float:
    """Text deltas word by word (text modality)."""
    text = reply.text
    words = re.findall(r"\S+\s*", text)
    steps.append((0.0, r.ResponseContentPartAdded(part=ContentPart(type="text", text=""), **part_ids)))
    steps += [(j * TEXT_WORD_S, r.ResponseOutputTextDelta(delta=w, **part_ids)) for j, w in enumerate(words)]
    end = max(0, len(words) - 1) * TEXT_WORD_S
    steps += [
        (end, r.ResponseOutputTextDone(text=text, **part_ids)),
        (end, r.ResponseContentPartDone(part=ContentPart(type="text", text=text), **part_ids)),
    ]
    return end
