"""Commands into the core, as values: one frozen class per input that is not a server event.

:meth:`Conversation.handle <engine.core.conversation.Conversation.handle>` takes
any of these (the convenience methods such as ``send_text`` build one), so a
recording writes each command as its ``TYPE`` and fields (:func:`to_record`)
and a replay rebuilds it (:func:`from_record`): no proxy, no list of names.

A command checks its arguments when it is built: a wrong type or value raises
``TypeError``/``ValueError`` naming the command, before anything changes.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import attrs

from engine.errors import ErrorCode, UsageTypeError, UsageValueError
from engine.protocol import client as c
from engine.protocol._wire import from_wire, to_wire
from engine.protocol.config import SessionConfig, config_from_wire
from engine.protocol.items import Item

ASK_TAG = "engine_oob"
"""The ``metadata`` key that ties an out-of-band response to its ask (docs/protocol.md §7.1)."""


def _require(command: str, name: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
    """Refuse an argument of the wrong type at the call, before anything changes."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        raise UsageTypeError(f"{command}(): {name} must be {expected}, got {type(value).__name__}")


def _require_sendable(command: str, what: str, event: c.ClientEvent) -> None:
    """Refuse a client event that cannot be written as JSON (wrong field types, NaN)."""
    try:
        json.dumps(to_wire(event), allow_nan=False)
    except TypeError as exc:
        raise UsageTypeError(f"{command}(): {what} cannot be sent: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise UsageValueError(f"{command}(): {what} cannot be sent: {exc}") from None


@attrs.frozen(kw_only=True)
class ConnectionOpened:
    """A socket is up; the core waits for ``session.created``."""

    TYPE: ClassVar[str] = "connection_opened"


@attrs.frozen(kw_only=True)
class ConnectionLost:
    """The socket dropped (abnormal close, network error, keep-alive timeout)."""

    TYPE: ClassVar[str] = "connection_lost"


@attrs.frozen(kw_only=True)
class Close:
    """End the conversation; running tools are cancelled."""

    TYPE: ClassVar[str] = "close"


@attrs.frozen(kw_only=True)
class ProtocolFault:
    """A server message could not be decoded; the conversation goes on."""

    TYPE: ClassVar[str] = "protocol_error"
    message: str
    code: str = ErrorCode.PROTOCOL_ERROR


@attrs.frozen(kw_only=True)
class SendText:
    """Add a user text message and ask for a response to it."""

    TYPE: ClassVar[str] = "send_text"
    text: str

    def __attrs_post_init__(self) -> None:
        _require("send_text", "text", self.text, str, "a str")


@attrs.frozen(kw_only=True)
class AddItem:
    """Add any conversation item without asking for a response."""

    TYPE: ClassVar[str] = "add_item"
    item: Item

    def __attrs_post_init__(self) -> None:
        _require("add_item", "item", self.item, Item, "an engine.protocol.items.Item")
        _require_sendable("add_item", "the item", c.ConversationItemCreate(item=self.item))


@attrs.frozen(kw_only=True)
class CreateResponse:
    """Ask for a response; coalesced with any already in flight."""

    TYPE: ClassVar[str] = "create_response"
    params: c.ResponseParams | None = None

    def __attrs_post_init__(self) -> None:
        if self.params is not None:
            _require("create_response", "params", self.params, c.ResponseParams, "a ResponseParams or None")
            _require_sendable("create_response", "the params", c.ResponseCreate(response=self.params))


@attrs.frozen(kw_only=True)
class CancelResponse:
    """Cancel the response in flight (deferred until it has an id)."""

    TYPE: ClassVar[str] = "cancel_response"


@attrs.frozen(kw_only=True)
class Interrupt:
    """Cut the assistant off now, as a barge-in would."""

    TYPE: ClassVar[str] = "interrupt"


@attrs.frozen(kw_only=True)
class CommitAudio:
    """Commit the input buffer as a user turn (manual turns)."""

    TYPE: ClassVar[str] = "commit_audio"


@attrs.frozen(kw_only=True)
class ClearAudio:
    """Discard the server's uncommitted input audio."""

    TYPE: ClassVar[str] = "clear_audio"


@attrs.frozen(kw_only=True)
class Update:
    """Send a new configuration (refused with ``UpdateRejected`` if the server would refuse it)."""

    TYPE: ClassVar[str] = "update"
    config: SessionConfig

    def __attrs_post_init__(self) -> None:
        _require("update", "config", self.config, SessionConfig, "a SessionConfig")


ASK_CONTEXTS = ("conversation", "none")
"""What an out-of-band answer sees: the call so far, or only its prompt."""


@attrs.frozen(kw_only=True)
class Ask:
    """Ask for an out-of-band text answer that never enters the conversation (``Session.ask``).

    ``context="conversation"``: the model sees the call so far and ``prompt`` is the
    response's instructions (after ``instructions``, if given); ``"none"``: it sees only
    ``prompt``, as a user message, under ``instructions`` (default: the session's).
    No answer within ``timeout`` seconds ends the ask with ``ask_timeout``.
    """

    TYPE: ClassVar[str] = "ask"
    prompt: str
    instructions: str | None = None
    context: str = "conversation"
    timeout: float = 30.0

    def __attrs_post_init__(self) -> None:
        _require("ask", "prompt", self.prompt, str, "a str")
        if not self.prompt.strip():
            raise UsageValueError("ask(): prompt must not be empty")
        if self.instructions is not None:
            _require("ask", "instructions", self.instructions, str, "a str or None")
        _require("ask", "context", self.context, str, "a str")
        if self.context not in ASK_CONTEXTS:
            raise UsageValueError(f"ask(): context must be one of {ASK_CONTEXTS}, got {self.context!r}")
        _require("ask", "timeout", self.timeout, (int, float), "a number of seconds")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageValueError(f"ask(): timeout must be finite and positive, got {self.timeout!r}")
        _require_sendable("ask", "the prompt", c.ResponseCreate(response=self.params("ask_0")))

    def params(self, request_id: str) -> c.ResponseParams:
        """The ``response.create`` parameters, tagged with ``request_id`` in ``metadata``."""
        if self.context == "none":
            instructions, given = self.instructions, (Item.user_text(self.prompt),)
        else:
            instructions = (
                self.prompt if self.instructions is None else f"{self.instructions}\n\n{self.prompt}"
            )
            given = None  # no input: the default conversation is the context
        return c.ResponseParams(
            conversation="none",
            output_modalities=("text",),
            instructions=instructions,
            input=given,
            metadata={ASK_TAG: request_id},
        )


@attrs.frozen(kw_only=True)
class ToolOutput:
    """Answer a tool call exactly once (``output`` is the JSON text of the result)."""

    TYPE: ClassVar[str] = "tool_result"
    call_id: str
    output: str
    is_error: bool = False

    def __attrs_post_init__(self) -> None:
        _require("tool_result", "call_id", self.call_id, str, "a str")
        _require("tool_result", "output", self.output, str, "a str (the JSON text of the result)")
        _require("tool_result", "is_error", self.is_error, bool, "a bool")


@attrs.frozen(kw_only=True)
class AudioPlayed:
    """The speaker has played ``ms`` of item ``item_id`` (cumulative)."""

    TYPE: ClassVar[str] = "audio_played"
    item_id: str
    ms: float

    def __attrs_post_init__(self) -> None:
        _require("audio_played", "item_id", self.item_id, str, "a str")
        _require("audio_played", "ms", self.ms, (int, float), "a number of milliseconds")
        if not (math.isfinite(self.ms) and self.ms >= 0):
            raise UsageValueError(f"audio_played(): ms must be finite and not negative, got {self.ms!r}")


@attrs.frozen(kw_only=True)
class TimerFired:
    """A timer armed by an ``ArmTimer`` effect expired."""

    TYPE: ClassVar[str] = "timer_fired"
    name: str


Command = (
    ConnectionOpened
    | ConnectionLost
    | Close
    | ProtocolFault
    | SendText
    | AddItem
    | CreateResponse
    | CancelResponse
    | Interrupt
    | CommitAudio
    | ClearAudio
    | Update
    | Ask
    | ToolOutput
    | AudioPlayed
    | TimerFired
)

COMMANDS: dict[str, type[Command]] = {
    cls.TYPE: cls
    for cls in (
        ConnectionOpened,
        ConnectionLost,
        Close,
        ProtocolFault,
        SendText,
        AddItem,
        CreateResponse,
        CancelResponse,
        Interrupt,
        CommitAudio,
        ClearAudio,
        Update,
        Ask,
        ToolOutput,
        AudioPlayed,
        TimerFired,
    )
}
"""Every command class by its ``TYPE`` (the name of its convenience method)."""
COMMAND_TYPES = tuple(COMMANDS.values())


def to_record(command: Command) -> dict[str, Any]:
    """A command as JSON-ready data: ``{"type": TYPE, **fields}`` (items and configs in wire form)."""
    fields = {
        field.name: to_wire(value) if attrs.has(type(value)) else value
        for field in attrs.fields(type(command))
        for value in [getattr(command, field.name)]
    }
    return {"type": command.TYPE, **fields}


def from_record(data: dict[str, Any]) -> Command:
    """The command :func:`to_record` wrote (``ValueError`` for an unknown type)."""
    fields = {k: v for k, v in data.items() if k != "type"}
    cls = COMMANDS.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"not a core command: {data.get('type')!r}")
    if cls is AddItem:
        fields["item"] = from_wire(Item, fields["item"])
    elif cls is Update:
        fields["config"] = config_from_wire(fields["config"])
    elif cls is CreateResponse and fields.get("params") is not None:
        fields["params"] = from_wire(c.ResponseParams, fields["params"])
    return cls(**fields)
