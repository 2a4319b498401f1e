"""Acknowledged updates and raw client events: the session's side of both.

``Session.update`` waits here for the server's answer to its own
``session.update`` (matched by event id: ``ConfigApplied`` or
``ConfigRejected``, see :mod:`engine.core.updates`).

``Session.send_raw`` sends an event this library does not model yet, without
going around the core: :func:`route` decodes a known client type through the
codec into its typed class (a malformed one is refused as the codec refuses
it) and turns the ones the core guards into the command that guards them, so a
raw ``response.create`` still goes through the response slot.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from engine.actors.dispatch import Dispatcher
from engine.actors.effects import Interpreter
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.effects import Effect
from engine.core.states import State
from engine.errors import SessionClosed, UpdateRejected, UsageTypeError, UsageValueError
from engine.protocol import client as c
from engine.protocol.codec import decode_client
from engine.protocol.config import SessionConfig, config_from_wire

if TYPE_CHECKING:
    from engine.actors.session import Session
    from engine.core.conversation import Conversation

_LIVE = (State.SESSION_READY, State.USER_SPEAKING, State.RESPONDING, State.AWAITING_TOOL)


async def acknowledged(
    dispatcher: Dispatcher,
    effects: Interpreter,
    out: list[Effect],
    event_id: str,
    closed: Callable[[str], SessionClosed],
) -> ev.ConfigApplied:
    """Apply an update's effects, then wait for the server's answer to ``event_id``.

    The answer has a deadline in the core (``response_timeout``: ``update_timeout``);
    ``closed`` makes the session's ``SessionClosed`` (with its reason) if it ends first.
    """
    async with dispatcher.stream((ev.ConfigApplied, ev.ConfigRejected)) as answers:
        await anyio.lowlevel.checkpoint()
        await effects.apply(out)
        async for answer in answers:
            if answer.event_id != event_id:
                continue  # another update's answer
            if isinstance(answer, ev.ConfigRejected):
                raise UpdateRejected(
                    f"the server refused the update: {answer.message}", param=answer.param, code=answer.code
                )
            applied: ev.ConfigApplied = answer
            return applied
    raise closed("the session closed before the server answered the update")


async def send(session: Session, conv: Conversation, effects: Interpreter, event: Mapping[str, Any]) -> None:
    """``Session.send_raw``: validate ``event`` (:func:`route`) and send it the way its type goes.

    ``response.create`` through the response slot (coalesced as ``create_response``),
    ``response.cancel`` as ``cancel_response``, ``conversation.item.create`` as
    ``add_item``, ``input_audio_buffer.*`` as the audio methods, ``session.update``
    merged over the current configuration and awaited as ``update``. Another known
    type goes out decoded and re-encoded; an unknown type is sent as given (as JSON,
    once the session is ready; it is not recorded, and the core knows nothing of it).
    """
    routed = route(event, session.config)
    if isinstance(routed, SessionConfig):
        await session.update(routed)
    elif isinstance(routed, bytes):
        await session.send_audio(routed)
    elif isinstance(routed, str):
        await anyio.lowlevel.checkpoint()
        if effects.outbox is None or conv.state not in _LIVE:
            raise session._closed(f"send_raw(): the session is not ready ({conv.state})")
        await effects.outbox.send(routed)
    else:
        await anyio.lowlevel.checkpoint()
        await effects.apply(conv.handle(routed))


Routed = cmd.Command | SessionConfig | bytes | str
"""What a raw event becomes: a core command, a configuration for ``update``, audio, or text to send."""


def route(event: Mapping[str, Any], current: SessionConfig) -> Routed:
    """Validate a raw client event and say how it must go out.

    Raises:
        TypeError: ``event`` is not a mapping with a string ``type`` (a ``UsageTypeError``).
        ValueError: not JSON; audio that is not base64; ``previous_item_id``; a ``session.update``
            with fields ``SessionConfig`` does not model (a ``UsageValueError``).
        ProtocolError: a known type the codec refuses.
    """
    if not isinstance(event, Mapping) or not isinstance(event.get("type"), str) or not event["type"]:
        raise UsageTypeError("send_raw(): the event must be a dict with a non-empty string 'type'")
    try:
        text = json.dumps(dict(event), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageValueError(f"send_raw(): the event is not JSON: {exc}") from None
    if event["type"] not in c.CLIENT_EVENTS:
        return text  # not modelled: sent as given (docs: send_raw)
    typed = decode_client(text)  # raises ProtocolError for a malformed known event
    if isinstance(typed, c.ResponseCreate):
        return cmd.CreateResponse(params=typed.response)
    if isinstance(typed, c.ResponseCancel):
        return cmd.CancelResponse()
    if isinstance(typed, c.ConversationItemCreate):
        if typed.previous_item_id is not None:
            raise UsageValueError("send_raw(): previous_item_id is not supported (the history appends)")
        return cmd.AddItem(item=typed.item)
    if isinstance(typed, c.InputAudioBufferCommit):
        return cmd.CommitAudio()
    if isinstance(typed, c.InputAudioBufferClear):
        return cmd.ClearAudio()
    if isinstance(typed, c.InputAudioBufferAppend):
        try:
            return base64.b64decode(typed.audio, validate=True)
        except binascii.Error as exc:
            raise UsageValueError(f"send_raw(): the appended audio is not base64: {exc}") from None
    if isinstance(typed, c.SessionUpdate):
        return _merged(current, typed.session)
    return text  # truncate, delete, retrieve, output_audio_buffer.clear: the core reads their answers


def _merged(current: SessionConfig, session: Mapping[str, Any]) -> SessionConfig:
    """The current configuration with a raw ``session`` object laid over it."""
    wire = _overlay(current.to_wire(), session)
    config = config_from_wire(wire)
    lost = sorted(set(session) - set(config.to_wire()) - {"type"})
    if lost:
        raise UsageValueError(f"send_raw(): session.update fields not modelled by SessionConfig: {lost}")
    return config


def _overlay(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = _overlay(below, value) if isinstance(below, dict) and isinstance(value, Mapping) else value
    return out
