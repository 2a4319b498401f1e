"""A recorded-style stream of server events, as the service sends them (docs/protocol.md §6).

Each turn is a server-VAD user turn (speech, commit, item, transcription), then
an audio answer: mostly ``response.output_audio.delta`` of 60 ms of 24 kHz
PCM16, with a transcript delta after every other chunk and the item and
response lifecycle around them. Every fourth turn the model first calls a tool
(``get_weather``); the server then waits for the session's ``response.create``
(sent with the tool's output) before the audio answer, as the service does.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from benchmarks._common import DELTA_MS, RATE, pcm

Event = dict[str, Any]

DELTA_B64 = base64.b64encode(pcm(DELTA_MS / 1000)).decode("ascii")
"""60 ms of 24 kHz PCM16 (2,880 bytes) in base64 (3,840 characters)."""
AWAIT_CREATE = "\x00await response.create"
"""Not an event: the server waits here for the client's ``response.create`` (the tool follow-up)."""
WORDS = [
    "Sure,",
    "here",
    "is",
    "what",
    "I",
    "found",
    "about",
    "the",
    "weather",
    "and",
    "the",
    "trains",
    "for",
    "your",
    "trip",
    "today.",
    "",
]


def dumps(event: Event) -> str:
    """Compact JSON, as the service sends it (the wait marker as itself)."""
    if event.get("await") == "response.create":
        return AWAIT_CREATE
    return json.dumps(event, separators=(",", ":"))


def user_turn(item: str, n: int) -> list[Event]:
    """speech_started .. transcription.completed for one user utterance."""
    user = {"id": item, "object": "realtime.item", "type": "message", "role": "user",
            "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip
    events: list[Event] = [
        {"type": "input_audio_buffer.speech_started", "event_id": f"ev_ss{n}", "item_id": item,
         "audio_start_ms": 1000 * n},
        {"type": "input_audio_buffer.speech_stopped", "event_id": f"ev_sp{n}", "item_id": item,
         "audio_end_ms": 1000 * n + 900},
        {"type": "input_audio_buffer.committed", "event_id": f"ev_c{n}", "item_id": item,
         "previous_item_id": None},
        {"type": "conversation.item.added", "event_id": f"ev_ia{n}", "previous_item_id": None, "item": user},
        {"type": "conversation.item.done", "event_id": f"ev_id{n}", "previous_item_id": None, "item": user},
    ]  # fmt: skip
    words = ["What's ", "the weather ", "in Paris?"]
    for w in words:
        events.append({"type": "conversation.item.input_audio_transcription.delta", "item_id": item,
                       "content_index": 0, "delta": w})  # fmt: skip
    events.append({"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                   "content_index": 0, "transcript": "".join(words)})  # fmt: skip
    return events


def tool_response(rid: str, call_id: str) -> list[Event]:
    """A response whose only output is a ``get_weather`` function call."""
    item = f"item_{call_id}"
    started = {"id": item, "object": "realtime.item", "type": "function_call", "status": "in_progress",
               "call_id": call_id, "name": "get_weather", "arguments": ""}  # fmt: skip
    args = '{"city":"Paris"}'
    done = {**started, "status": "completed", "arguments": args}
    where = {"response_id": rid, "item_id": item, "output_index": 0, "call_id": call_id}
    return [
        {"type": "response.created", "response": {"id": rid, "object": "realtime.response",
                                                  "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": started},
        {"type": "conversation.item.added", "previous_item_id": None, "item": started},
        {"type": "response.function_call_arguments.delta", **where, "delta": args},
        {"type": "response.function_call_arguments.done", **where, "name": "get_weather", "arguments": args},
        {"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": done},
        {"type": "conversation.item.done", "previous_item_id": None, "item": done},
        {"type": "response.done", "response": {"id": rid, "object": "realtime.response",
                                               "status": "completed", "output": [done],
                                               "usage": {"total_tokens": 30}}},
    ]  # fmt: skip


def audio_response(rid: str, item: str, chunks: int) -> list[Event]:
    """An audio answer of ``chunks`` deltas, with transcript deltas after every other one."""
    message = {"id": item, "object": "realtime.item", "type": "message", "role": "assistant",
               "status": "in_progress", "content": []}  # fmt: skip
    part = {"response_id": rid, "item_id": item, "output_index": 0, "content_index": 0}
    events: list[Event] = [
        {"type": "response.created", "response": {"id": rid, "object": "realtime.response",
                                                  "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": message},
        {"type": "conversation.item.added", "previous_item_id": None, "item": message},
        {"type": "response.content_part.added", **part, "part": {"type": "audio", "transcript": ""}},
    ]  # fmt: skip
    spoken = []
    for k in range(chunks):
        events.append({"type": "response.output_audio.delta", **part, "delta": DELTA_B64})
        if k % 2 == 1:
            word = WORDS[(k // 2) % len(WORDS)] + " "
            spoken.append(word)
            events.append({"type": "response.output_audio_transcript.delta", **part, "delta": word})
    text = "".join(spoken)
    final = {**message, "status": "completed", "content": [{"type": "output_audio", "transcript": text}]}
    events += [
        {"type": "response.output_audio.done", **part},
        {"type": "response.output_audio_transcript.done", **part, "transcript": text},
        {"type": "response.content_part.done", **part, "part": {"type": "audio", "transcript": text}},
        {"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": final},
        {"type": "conversation.item.done", "previous_item_id": None, "item": final},
        {"type": "response.done", "response": {"id": rid, "object": "realtime.response",
                                               "status": "completed", "output": [final],
                                               "usage": {"total_tokens": 120}}},
    ]  # fmt: skip
    return events


def conversation(turns: int, chunks: int = 40) -> list[Event]:
    """``turns`` user turns with their answers; every fourth answer goes through a tool first."""
    events: list[Event] = []
    for n in range(turns):
        events += user_turn(f"item_u{n}", n)
        if n % 4 == 3:
            events += tool_response(f"resp_t{n}", f"call_{n}")
            events.append({"await": "response.create"})  # as a server does: the answer follows the output
        events += audio_response(f"resp_a{n}", f"item_a{n}", chunks)
    return events


def mix(events: list[Event]) -> dict[str, int]:
    """How many events of each type (for the report)."""
    out: dict[str, int] = {}
    for event in events:
        if "type" in event:
            out[event["type"]] = out.get(event["type"], 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


assert len(base64.b64decode(DELTA_B64)) == RATE * 2 * DELTA_MS // 1000
