"""The browser's wire protocol on ``WS /browser``, sans-IO: frames in, typed messages out, and back.

Theory of operation. The page and the gateway exchange two kinds of frames on
one WebSocket:

* **binary**: audio. Page to gateway: the microphone as 16-bit little-endian
  mono PCM at the session's input rate (any whole number of samples). Gateway
  to page: assistant audio as ``[n: 1 byte][item id: n bytes UTF-8][PCM16 at
  the output rate]``, so every chunk says which item it belongs to.
* **text**: JSON control, one object with a ``type`` per frame. Page to
  gateway: ``{"type": "played", "item_id": ..., "ms": ...}`` (the player's
  cumulative position in that item; like a phone carrier's mark echo, it is
  what the person heard) and ``{"type": "hangup"}``. Gateway to page:
  ``hello`` (call id, rates, the machines' current states), ``flush`` (drop
  everything queued now: the user barged in), and ``event`` (a session event
  in words for the live view; see :func:`event_view`).

:class:`PlayedLedger` turns the page's positions into ``audio_played`` calls
the way :class:`~engine.gateway.marks.MarkLedger` does for marks: positions
only grow, never beyond what was sent, and a flush freezes the items sent so
far at what was acknowledged. Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from engine.core import events as ev

MAX_ITEM_ID = 255
"""Item ids are sent in a 1-byte length prefix."""
MAX_CONTROL = 4096
"""Bytes of a control frame from the page; anything longer is malformed (they are tiny)."""


@attrs.frozen
class Played:
    """The page's player has played ``ms`` milliseconds of item ``item_id`` (cumulative)."""

    item_id: str
    ms: float


@attrs.frozen
class Hangup:
    """The person ended the call from the page."""


@attrs.frozen
class Audio:
    """Microphone audio: PCM16 mono at the session's input rate."""

    pcm: bytes


@attrs.frozen
class Malformed:
    """A frame that could not be used: ``reason`` says why, ``raw`` is its clipped start."""

    reason: str
    raw: str


PageMessage = Played | Hangup | Audio | Malformed


def decode(frame: str | bytes) -> PageMessage:
    """One frame from the page as a typed message (never raises)."""
    if isinstance(frame, bytes):
        if len(frame) % 2:
            return Malformed(
                f"audio of odd length {len(frame)} (PCM16 has 2 bytes a sample)", repr(frame[:16])
            )
        return Audio(frame)
    raw = frame[:120]
    if len(frame) > MAX_CONTROL:
        return Malformed(f"control frame of {len(frame)} characters (at most {MAX_CONTROL})", raw)
    try:
        message = json.loads(frame)
    except ValueError:
        return Malformed("not JSON", raw)
    if not isinstance(message, dict):
        return Malformed("not a JSON object", raw)
    kind = message.get("type")
    if kind == "hangup":
        return Hangup()
    if kind == "played":
        item, ms = message.get("item_id"), message.get("ms")
        if not isinstance(item, str) or not item:
            return Malformed("played without an item_id string", raw)
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
            return Malformed("played without a finite ms >= 0", raw)
        return Played(item, float(ms))
    return Malformed(f"unknown control type {kind!r}", raw)


# ------------------------------------------------------------------ gateway to page


def audio_frame(item_id: str, pcm: bytes) -> bytes:
    """Assistant audio for the page: the item id (length-prefixed) then the PCM."""
    name = item_id.encode("utf-8")
    if len(name) > MAX_ITEM_ID:
        raise ValueError(f"item id of {len(name)} bytes (at most {MAX_ITEM_ID})")
    return bytes([len(name)]) + name + pcm


def split_audio_frame(frame: bytes) -> tuple[str, bytes]:
    """The inverse of :func:`audio_frame` (the page does this in JavaScript; tests use it)."""
    n = frame[0]
    return frame[1 : 1 + n].decode("utf-8"), frame[1 + n :]


def control(kind: str, /, **fields: Any) -> str:
    """A JSON control frame for the page."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def event_view(event: object, t: float) -> dict[str, Any] | None:
    """A session event as the live view shows it (``t``: seconds since the call began), or None.

    Audio and the protocol's bookkeeping events are not shown; the rest keep
    only what a person reads: states, words, tool calls, latency, reconnects.
    """
    view: dict[str, Any]
    if isinstance(event, ev.StateChanged):
        view = {"kind": "state", "machine": "conversation", "old": event.old.value, "new": event.new.value}
    elif isinstance(event, ev.UserTranscript):
        view = {"kind": "user", "item_id": event.item_id, "text": event.text, "final": event.final}
    elif isinstance(event, ev.AssistantTranscript | ev.AssistantText):
        view = {"kind": "assistant", "item_id": event.item_id, "text": event.text, "final": event.final}
    elif isinstance(event, ev.ToolCall):
        view = {
            "kind": "tool_call",
            "call_id": event.call_id,
            "name": event.name,
            "arguments": event.arguments,
        }
    elif isinstance(event, ev.ToolResult):
        view = {"kind": "tool_result", "call_id": event.call_id, "name": event.name, "output": event.output}
        view["is_error"] = event.is_error
    elif isinstance(event, ev.Interrupted):
        view = {"kind": "interrupted", "item_id": event.item_id, "played_ms": event.played_ms}
    elif isinstance(event, ev.TurnMetrics):
        view = {"kind": "metrics", **_metrics(event)}
    elif isinstance(event, ev.Reconnecting):
        view = {"kind": "reconnecting", "attempt": event.attempt, "delay": event.delay}
    elif isinstance(event, ev.Reconnected):
        view = {"kind": "reconnected", "attempt": event.attempt}
    elif isinstance(event, ev.Error):
        view = {"kind": "error", "code": event.code, "message": event.message, "fatal": event.fatal}
    elif isinstance(event, ev.Closed):
        view = {"kind": "closed", "reason": event.reason}
    else:
        return None
    view["t"] = round(t, 3)
    return view


def _metrics(event: ev.TurnMetrics) -> dict[str, Any]:
    """The turn's latency in milliseconds (None when not measured, e.g. first played without acks)."""

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 1)

    return {
        "turn": event.turn,
        "first_audio_ms": ms(event.time_to_first_audio),
        "first_played_ms": ms(event.time_to_first_played),
        "tools_ms": ms(event.tool_seconds),
        "total_ms": ms(event.total_seconds),
    }


class PlayedLedger:
    """What the page's player says was heard, as ``(item_id, ms)`` for ``audio_played``.

    The gateway tells it what it sent (``sent``) and when it flushed the page's
    player (``flush``); ``played`` turns a page report into a position to
    acknowledge, or None when it says nothing new (not sent by us, not beyond
    the last, or of an item cut by a flush).
    """

    def __init__(self) -> None:
        self._sent: dict[str, float] = {}
        self._played: dict[str, int] = {}
        self._frozen: set[str] = set()
        self.ignored = 0
        """Reports that said nothing new (unknown, frozen or stale items)."""

    def sent(self, item_id: str, ms: float) -> None:
        """``ms`` more of ``item_id`` went to the page."""
        if item_id not in self._frozen:
            self._sent[item_id] = self._sent.get(item_id, 0.0) + ms

    def played(self, report: Played) -> tuple[str, int] | None:
        """The position to acknowledge for this report (whole ms, clamped to what was sent), or None."""
        sent = self._sent.get(report.item_id)
        if sent is None or report.item_id in self._frozen:
            self.ignored += 1
            return None
        ms = int(min(report.ms, sent))
        if ms <= self._played.get(report.item_id, -1):
            return None
        self._played[report.item_id] = ms
        return report.item_id, ms

    def flush(self) -> None:
        """The page was told to drop its queue: items sent so far keep what they had acknowledged."""
        self._frozen.update(self._sent)

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of the item acknowledged so far (0 when none)."""
        return self._played.get(item_id, 0)
