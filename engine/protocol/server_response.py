"""Server events, part two: everything under ``response.*``.

The order in which these arrive for one response is fixed by GA (docs/protocol.md
§6): created, output items with their content parts and deltas, then done.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from engine.protocol.items import ContentPart, Item, Response, Usage
from engine.protocol.server import ServerEventBase


@attrs.frozen(kw_only=True)
class ResponseCreated(ServerEventBase):
    """A response started (status ``in_progress``)."""

    TYPE: ClassVar[str] = "response.created"
    response: Response = Response()


@attrs.frozen(kw_only=True)
class ResponseDoneEvent(ServerEventBase):
    """A response ended: ``completed``, ``cancelled``, ``failed`` or ``incomplete``.

    Inworld may also put ``usage`` at the top level; :attr:`effective_usage` prefers it.
    """

    TYPE: ClassVar[str] = "response.done"
    response: Response = Response()
    usage: Usage | None = None

    @property
    def effective_usage(self) -> Usage | None:
        """Top-level usage when present, else the response's own."""
        return self.usage if self.usage is not None else self.response.usage


@attrs.frozen(kw_only=True)
class _OutputItemEvent(ServerEventBase):
    response_id: str | None = None
    output_index: int | None = None
    item: Item | None = None


@attrs.frozen(kw_only=True)
class ResponseOutputItemAdded(_OutputItemEvent):
    """The response added an output item (message or function call)."""

    TYPE: ClassVar[str] = "response.output_item.added"


@attrs.frozen(kw_only=True)
class ResponseOutputItemDone(_OutputItemEvent):
    """An output item is complete (``status`` may be ``incomplete`` after a cancel)."""

    TYPE: ClassVar[str] = "response.output_item.done"


@attrs.frozen(kw_only=True)
class _PartEvent(ServerEventBase):
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    content_index: int | None = None


@attrs.frozen(kw_only=True)
class ResponseContentPartAdded(_PartEvent):
    """A content part (audio or text) started."""

    TYPE: ClassVar[str] = "response.content_part.added"
    part: ContentPart | None = None


@attrs.frozen(kw_only=True)
class ResponseContentPartDone(_PartEvent):
    """A content part finished."""

    TYPE: ClassVar[str] = "response.content_part.done"
    part: ContentPart | None = None


@attrs.frozen(kw_only=True)
class ResponseOutputTextDelta(_PartEvent):
    """Text output (text modality)."""

    TYPE: ClassVar[str] = "response.output_text.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class ResponseOutputTextDone(_PartEvent):
    """Text output finished, with the whole text."""

    TYPE: ClassVar[str] = "response.output_text.done"
    text: str | None = None


@attrs.frozen(kw_only=True)
class ResponseOutputAudioDelta(_PartEvent):
    """A chunk of base64 audio in the session's output format."""

    TYPE: ClassVar[str] = "response.output_audio.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class ResponseOutputAudioDone(_PartEvent):
    """The audio of an item finished."""

    TYPE: ClassVar[str] = "response.output_audio.done"


@attrs.frozen(kw_only=True)
class ResponseOutputAudioTranscriptDelta(_PartEvent):
    """A piece of the transcript of the assistant's audio."""

    TYPE: ClassVar[str] = "response.output_audio_transcript.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class ResponseOutputAudioTranscriptDone(_PartEvent):
    """The transcript of an item's audio, whole."""

    TYPE: ClassVar[str] = "response.output_audio_transcript.done"
    transcript: str | None = None


@attrs.frozen(kw_only=True)
class _CallEvent(ServerEventBase):
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    call_id: str | None = None


@attrs.frozen(kw_only=True)
class ResponseFunctionCallArgumentsDelta(_CallEvent):
    """A piece of a function call's JSON arguments."""

    TYPE: ClassVar[str] = "response.function_call_arguments.delta"
    delta: str = ""


@attrs.frozen(kw_only=True)
class ResponseFunctionCallArgumentsDone(_CallEvent):
    """A function call's arguments are complete. Inworld may omit ``name``."""

    TYPE: ClassVar[str] = "response.function_call_arguments.done"
    name: str | None = None
    arguments: str = ""


@attrs.frozen(kw_only=True)
class _McpCallEvent(ServerEventBase):
    item_id: str | None = None
    output_index: int | None = None


@attrs.frozen(kw_only=True)
class ResponseMcpCallArgumentsDelta(_McpCallEvent):
    """A piece of an MCP call's arguments."""

    TYPE: ClassVar[str] = "response.mcp_call_arguments.delta"
    response_id: str | None = None
    delta: str = ""
    obfuscation: str | None = None


@attrs.frozen(kw_only=True)
class ResponseMcpCallArgumentsDone(_McpCallEvent):
    """An MCP call's arguments are complete."""

    TYPE: ClassVar[str] = "response.mcp_call_arguments.done"
    response_id: str | None = None
    arguments: str = ""


@attrs.frozen(kw_only=True)
class ResponseMcpCallInProgress(_McpCallEvent):
    """An MCP call is running."""

    TYPE: ClassVar[str] = "response.mcp_call.in_progress"


@attrs.frozen(kw_only=True)
class ResponseMcpCallCompleted(_McpCallEvent):
    """An MCP call finished."""

    TYPE: ClassVar[str] = "response.mcp_call.completed"


@attrs.frozen(kw_only=True)
class ResponseMcpCallFailed(_McpCallEvent):
    """An MCP call failed."""

    TYPE: ClassVar[str] = "response.mcp_call.failed"
