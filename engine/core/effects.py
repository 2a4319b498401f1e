"""Effects: what the pure core asks the runtime to do.

The core never performs I/O; each input returns a list of these, and the
runtime's actors carry them out in order.
"""

from __future__ import annotations

import attrs

from engine.core.events import UserEvent
from engine.protocol.client import ClientEvent


@attrs.frozen
class Send:
    """Write this client event to the socket (the writer keeps the order)."""

    event: ClientEvent


@attrs.frozen
class Emit:
    """Deliver this event to the application's callbacks and event streams."""

    event: UserEvent


@attrs.frozen(kw_only=True)
class StartTool:
    """Run a tool call; answer it with ``Conversation.tool_result`` exactly once."""

    call_id: str
    name: str
    arguments: str


@attrs.frozen(kw_only=True)
class CancelTools:
    """Cancel these running calls if their policy allows (``reason``: interrupted, closed)."""

    call_ids: tuple[str, ...]
    reason: str


@attrs.frozen(kw_only=True)
class ArmTimer:
    """Call ``Conversation.timer_fired(name)`` after ``delay`` seconds (re-arming replaces)."""

    name: str
    delay: float


@attrs.frozen(kw_only=True)
class CancelTimer:
    """Forget the timer ``name`` if armed."""

    name: str


@attrs.frozen
class GateAudio:
    """Open (``True``) or close the flow of caller audio to the socket; held audio waits."""

    open: bool


@attrs.frozen(kw_only=True)
class DropAudioOut:
    """Discard every queued, undelivered ``AudioOut`` of ``response_id`` (barge-in)."""

    response_id: str | None


Effect = Send | Emit | StartTool | CancelTools | ArmTimer | CancelTimer | GateAudio | DropAudioOut
