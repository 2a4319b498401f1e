"""The values the public ``Session`` takes and gives besides events: history entries and statistics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from engine.protocol.items import Item

if TYPE_CHECKING:
    from engine.actors.dispatch import Dispatcher
    from engine.actors.effects import Interpreter


@attrs.frozen(kw_only=True)
class SessionStatistics:
    """Counters and queue depths of a session (``Session.statistics()``), for monitoring.

    Attributes:
        outbox_queued: encoded messages waiting for the socket writer.
        messages_sent: messages written to the socket (this connect).
        audio_chunks_sent: ``input_audio_buffer.append`` messages queued.
        audio_chunks_dropped: caller audio chunks dropped (held past ``hold_limit_ms``,
            or given to ``send_audio_nowait`` faster than they could be sent).
        events_delivered: events handed to callbacks and streams.
        events_dropped: events dropped because a subscriber's queue was full.
        event_subscribers: callbacks and open ``events()`` streams.
        slow_callbacks: sync callbacks moved to a worker thread for being slow.
        tools_running: tool calls in progress.
    """

    outbox_queued: int = 0
    messages_sent: int = 0
    audio_chunks_sent: int = 0
    audio_chunks_dropped: int = 0
    events_delivered: int = 0
    events_dropped: int = 0
    event_subscribers: int = 0
    slow_callbacks: int = 0
    tools_running: int = 0

    @classmethod
    def of(cls, dispatcher: Dispatcher, effects: Interpreter | None) -> SessionStatistics:
        """A snapshot of ``dispatcher`` and of the actors ``effects`` drives (zeros before connect)."""
        counts = {
            "events_delivered": dispatcher.delivered,
            "events_dropped": dispatcher.dropped,
            "event_subscribers": dispatcher.subscriber_count(),
            "slow_callbacks": dispatcher.slow_callbacks,
        }
        if effects is None:
            return cls(**counts)
        outbox = effects.outbox
        return cls(
            outbox_queued=outbox.statistics() if outbox is not None else 0,
            messages_sent=outbox.sent if outbox is not None else 0,
            audio_chunks_sent=effects.audio.chunks_sent,
            audio_chunks_dropped=effects.audio.dropped_chunks,
            tools_running=len(effects.runner.running()),
            **counts,
        )


def to_item(entry: Item | Mapping[str, Any]) -> Item:
    """An initial-history entry as an item (chat-style dicts are accepted)."""
    if isinstance(entry, Item):
        return entry
    kind = entry.get("type")
    if kind == "function_call":
        return Item.function_call(
            str(entry["call_id"]), str(entry["name"]), str(entry.get("arguments", "{}"))
        )
    if kind == "function_call_output":
        return Item.function_call_output(str(entry["call_id"]), str(entry["output"]))
    role, content = entry.get("role"), entry.get("content")
    if not isinstance(content, str):
        raise TypeError(f"history entry needs a string 'content': {dict(entry)!r}")
    makers = {"user": Item.user_text, "assistant": Item.assistant_text, "system": Item.system_text}
    if role not in makers:
        raise ValueError(f"history entry role must be user, assistant or system, got {role!r}")
    return makers[role](content)
