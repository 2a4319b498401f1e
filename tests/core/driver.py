"""A synchronous driver for the pure core: feed wire JSON, read back effects by kind.

Besides the :class:`Driver` itself this module holds small builders for the wire
shapes of docs/protocol.md §6 (responses, message and function-call items) and the
server's half of the typical sequences, so each test states only what differs.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from engine.core import events as ev
from engine.core.conversation import Conversation, CoreOptions
from engine.core.effects import Effect, Emit, Send
from engine.core.states import Phase, State
from engine.errors import ProtocolError
from engine.protocol import SessionConfig, decode
from engine.protocol.codec import encode
from engine.protocol.items import Item

T = TypeVar("T")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Driver:
    """Wraps a Conversation; every server event goes through the real decoder."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        history: tuple[Item, ...] = (),
        options: CoreOptions | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.conv = Conversation(
            config or SessionConfig(), clock=self.clock, history=history, options=options or CoreOptions()
        )
        self.effects: list[Effect] = []

    @property
    def where(self) -> tuple[State, Phase]:
        """The conversation state and the response phase."""
        return self.conv.state, self.conv.phase

    def server(self, type_: str, **fields: Any) -> list[Effect]:
        """Feed one server event given as its wire fields."""
        text = json.dumps({"type": type_, **fields})
        out = self.conv.receive(decode(text))
        self.effects.extend(out)
        return out

    def raw(self, text: str | bytes) -> list[Effect]:
        """Feed raw wire text as the runtime does: undecodable text becomes ``protocol_error``."""
        try:
            event = decode(text)
        except ProtocolError as exc:
            out = self.conv.protocol_error(str(exc))
        else:
            out = self.conv.receive(event)
        self.effects.extend(out)
        return out

    def do(self, effects: list[Effect]) -> list[Effect]:
        """Record the effects of a command."""
        self.effects.extend(effects)
        return effects

    def take(self) -> list[Effect]:
        """Everything since the last take."""
        out, self.effects = self.effects, []
        return out

    def ready(self) -> list[Effect]:
        """Run the handshake: session.created, then session.updated."""
        self.server("session.created", session={})
        self.server("session.updated", session={"type": "realtime"})
        return self.take()

    # ------------------------------------------------------------ server halves of §6

    def user_turn(self, item_id: str = "item_u1", transcript: str | None = None) -> list[Effect]:
        """§6.1 steps 4-7: speech started/stopped, committed, the user item added and done."""
        start = len(self.effects)
        self.server("input_audio_buffer.speech_started", item_id=item_id, audio_start_ms=1000)
        self.server("input_audio_buffer.speech_stopped", item_id=item_id, audio_end_ms=2500)
        self.server("input_audio_buffer.committed", item_id=item_id, previous_item_id=None)
        self.server("conversation.item.added", item=user_audio_item(item_id))
        self.server("conversation.item.done", item=user_audio_item(item_id))
        if transcript is not None:
            self.server(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
            )
        return self.effects[start:]

    def start_reply(self, rid: str, item_id: str) -> list[Effect]:
        """§6.1 steps 9-12: response.created, the assistant item, its audio part."""
        start = len(self.effects)
        self.server("response.created", response=response(rid))
        self.server("rate_limits.updated", rate_limits=[{"name": "requests", "limit": 100, "remaining": 99}])
        item = assistant_item(item_id)
        self.server("response.output_item.added", response_id=rid, output_index=0, item=item)
        self.server("conversation.item.added", previous_item_id=None, item=item)
        self.server(
            "response.content_part.added",
            response_id=rid,
            item_id=item_id,
            output_index=0,
            content_index=0,
            part={"type": "audio", "transcript": ""},
        )
        return self.effects[start:]

    def audio(self, rid: str, item_id: str, b64: str, words: str | None = None) -> list[Effect]:
        """§6.1 step 13: one audio delta, optionally with a transcript delta."""
        start = len(self.effects)
        part = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        self.server("response.output_audio.delta", **part, delta=b64)
        if words is not None:
            self.server("response.output_audio_transcript.delta", **part, delta=words)
        return self.effects[start:]

    def finish_reply(
        self, rid: str, item_id: str, transcript: str, *, status: str = "completed", **done: Any
    ) -> list[Effect]:
        """§6.1 steps 14-17 (or §6.4 step 2 with ``status="cancelled"``)."""
        start = len(self.effects)
        part = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        item_status = "completed" if status == "completed" else "incomplete"
        item = assistant_item(item_id, transcript, status=item_status)
        self.server("response.output_audio.done", **part)
        self.server("response.output_audio_transcript.done", **part, transcript=transcript)
        self.server("response.content_part.done", **part, part={"type": "audio", "transcript": transcript})
        self.server("response.output_item.done", response_id=rid, output_index=0, item=item)
        self.server("conversation.item.done", previous_item_id=None, item=item)
        self.server("response.done", response=response(rid, status, [item], **done))
        return self.effects[start:]

    def announce_call(
        self, rid: str, call_id: str, name: str, *, index: int = 0, item_id: str | None = None
    ) -> list[Effect]:
        """§6.3 step 2: the function_call item, via output_item.added then conversation.item.added."""
        start = len(self.effects)
        item = function_call_item(call_id, name, item_id=item_id)
        self.server("response.output_item.added", response_id=rid, output_index=index, item=item)
        self.server("conversation.item.added", previous_item_id=None, item=item)
        return self.effects[start:]

    def call_arguments(
        self,
        rid: str,
        call_id: str,
        name: str | None,
        arguments: str,
        *,
        index: int = 0,
        item_id: str | None = None,
    ) -> list[Effect]:
        """§6.3 steps 3-4: argument deltas, then arguments.done (``name=None``: Inworld omits it)."""
        start = len(self.effects)
        where = {"response_id": rid, "item_id": item_id or f"item_{call_id}", "output_index": index}
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            self.server("response.function_call_arguments.delta", **where, call_id=call_id, delta=piece)
        done: dict[str, Any] = {**where, "call_id": call_id, "arguments": arguments}
        if name is not None:
            done["name"] = name
        self.server("response.function_call_arguments.done", **done)
        return self.effects[start:]


# ---------------------------------------------------------------- wire builders


def response(rid: str, status: str = "in_progress", output: Any = (), **extra: Any) -> dict[str, Any]:
    """A GA response object (what response.created / response.done carry)."""
    return {"id": rid, "object": "realtime.response", "status": status, "output": list(output), **extra}


def user_audio_item(item_id: str, status: str = "completed") -> dict[str, Any]:
    """The server's user message for a voice turn (no audio bytes, transcript not yet filled)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def assistant_item(
    item_id: str, transcript: str | None = None, *, status: str = "in_progress"
) -> dict[str, Any]:
    """An assistant audio message; empty content while in progress."""
    content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(
    call_id: str,
    name: str,
    arguments: str = "",
    *,
    status: str = "in_progress",
    item_id: str | None = None,
) -> dict[str, Any]:
    """A function_call item as output_item.added / response.done carry it."""
    return {
        "id": item_id or f"item_{call_id}",
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


# ---------------------------------------------------------------- reading effects


def sent(effects: list[Effect]) -> list[dict[str, Any]]:
    """The client events among ``effects``, as the JSON the socket would carry."""
    return [json.loads(encode(e.event)) for e in effects if isinstance(e, Send)]


def sent_types(effects: list[Effect]) -> list[str]:
    """Types of the client events among ``effects``."""
    return [m["type"] for m in sent(effects)]


def emitted(effects: list[Effect]) -> list[Any]:
    """The user events among ``effects``."""
    return [e.event for e in effects if isinstance(e, Emit)]


def emitted_types(effects: list[Effect]) -> list[str]:
    """Class names of the user events among ``effects``."""
    return [type(e).__name__ for e in emitted(effects)]


def of_type(effects: list[Effect], cls: type[T]) -> list[T]:
    """The effects of one class (``StartTool``, ``GateAudio``...), in order."""
    return [e for e in effects if isinstance(e, cls)]


def errors(effects: list[Effect]) -> list[ev.Error]:
    """The Error user events among ``effects``."""
    return [e for e in emitted(effects) if isinstance(e, ev.Error)]


def outputs(effects: list[Effect]) -> list[dict[str, Any]]:
    """The function_call_output items sent, as wire dicts."""
    return [
        m["item"]
        for m in sent(effects)
        if m["type"] == "conversation.item.create" and m["item"]["type"] == "function_call_output"
    ]


def pcm_b64(n_bytes: int, value: int = 1) -> str:
    """Base64 of ``n_bytes`` of PCM."""
    return base64.b64encode(bytes([value]) * n_bytes).decode()


def unb64(text: str) -> bytes:
    """Decode base64 strictly (what the AudioOut bytes must equal)."""
    return binascii.a2b_base64(text, strict_mode=True)
